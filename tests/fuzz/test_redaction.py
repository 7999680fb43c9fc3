"""Redaction as a property (issue 17, class 2): a secret embedded at a random position in a flag value
-- a credential pair, a URL's user information or query, a home directory however it is spelled --
never survives ``redact_value``, and redacting twice changes nothing more.

Pure and in-process: no CLI, no files. Secrets are upper case and the text around them is not, so a
secret found in the output can only be the secret itself.
"""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from envlock.redact import redact_value
from tests.fuzz.helpers import examples

SECRETS = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=6, max_size=20).map(lambda s: "SX" + s)
# Flag-like text around the secret: lower case, digits and the punctuation flags and URLs are made of.
AROUND = st.text(alphabet=string.ascii_lowercase + string.digits + "_-./?&=:;,#@%+~ ", max_size=40)
TEMPLATES = st.sampled_from(["", "--xla_dump_to=", "--xla_dump_to=/var/xd?", "--flag=", "--a=b=",
                             "--tf_xla_auto_jit=2 ", "--xla_dump_to=gs://bucket/d?x=1&", "PATH=/opt/bin:",
                             "--xla_gpu_cuda_data_dir="])
# A credential key: any of these, also glued to the word before it ("xtoken"), as the markers match inside words.
GLUED_KEYS = st.sampled_from(["token", "secret", "password", "passwd", "pwd", "credential", "apikey", "api_key",
                              "access_key", "auth", "authorization", "signature", "session", "cookie", "private_key",
                              "passphrase", "AWS_SECRET_ACCESS_KEY", "X-Amz-Signature", "client_secret"])
# Whole-word keys need a boundary before them ("xpass" is not a password, "x-pass" is).
WORD_KEYS = st.sampled_from(["key", "pass", "sig", "pw", "jwt", "sas", "x.key", "db-pass"])
BOUNDARIES = st.sampled_from(["?", "&", "=", "/", ",", ";", " ", "--", ":", "\t", "-", ".", "#", "@"])
ENDS = st.sampled_from(["", " ", "&", ";", ",", "#", '"', "'", "\t"])
PATH_STARTS = st.sampled_from(["=", " ", ",", ";", '"', "'", "\t"])
HOMES = st.sampled_from(["/home/{u}", "//home/{u}", "/./home/{u}", "/home//{u}", "/home/./{u}", "///home/{u}/",
                         "/srv/../home/{u}", "/Users/{u}", "/mnt/c/Users/{u}", "/mnt/z/users/{u}",
                         "/cygdrive/c/Users/{u}", "/c/Users/{u}", "C:\\Users\\{u}", "C:/Users/{u}", "/home/{u}/.cache"])
SCHEMES = st.sampled_from(["https", "http", "s3", "gs", "ftp", "git+ssh", "file"])


@st.composite
def _pair(draw: st.DrawFn, secret: str) -> str:
    if draw(st.booleans()):
        key = draw(GLUED_KEYS)
        glue = draw(st.text(alphabet=string.ascii_lowercase + "_", max_size=3) | BOUNDARIES)
    else:
        key, glue = draw(WORD_KEYS), draw(BOUNDARIES)
    return f"{glue}{key}={secret}{draw(ENDS)}"


@st.composite
def _url(draw: st.DrawFn, secret: str) -> str:
    scheme, host = draw(SCHEMES), draw(st.sampled_from(["h", "host.example", "10.0.0.1:9000", ""]))
    kind = draw(st.sampled_from(["password", "user", "query", "bare_query", "fragment"]))
    if kind == "password":
        return f"{scheme}://{draw(st.sampled_from(['u', '', 'a.b']))}:{secret}@{host}/p{draw(ENDS)}"
    if kind == "user":
        return f"{scheme}://{secret}@{host}/p"
    name = draw(st.sampled_from(["k", "x-amz-date", "a_b", "next"]))
    if kind == "query":
        return f"{scheme}://{host}/p?{name}={secret}{draw(ENDS)}"
    if kind == "bare_query":
        # ended, or the text after it would make it a key ("?SECRETx=1" names a parameter SECRETx)
        return f"{scheme}://{host}/p?a=1&{secret}{draw(st.sampled_from([' ', '&', '#', '&b=2']))}"
    return f"{scheme}://{host}/p#{name}={secret}"


@st.composite
def _home(draw: st.DrawFn, secret: str) -> str:
    return draw(PATH_STARTS) + draw(HOMES).format(u=secret) + draw(st.sampled_from(["", "/x", "/d/e", " ", ":", ","]))


@st.composite
def values_with_a_secret(draw: st.DrawFn) -> tuple[str, str]:
    secret = draw(SECRETS)
    embedded = draw(st.one_of(_pair(secret), _url(secret), _home(secret)))
    base = draw(TEMPLATES) + draw(AROUND)
    at = draw(st.integers(min_value=0, max_value=len(base)))
    return base[:at] + embedded + base[at:] + draw(AROUND), secret


@examples(400)
@given(values_with_a_secret())
def test_a_secret_anywhere_in_a_value_never_survives(case: tuple[str, str]) -> None:
    value, secret = case
    redacted = redact_value(value)
    assert secret not in redacted, (value, redacted)
    assert redact_value(redacted) == redacted  # idempotent: what leaves once can leave again unchanged


@examples(200)
@given(st.lists(values_with_a_secret(), min_size=2, max_size=4))
def test_several_secrets_in_one_value_all_go(cases: list[tuple[str, str]]) -> None:
    value = " ".join(v for v, _ in cases)
    redacted = redact_value(value)
    assert not [secret for _, secret in cases if secret in redacted], (value, redacted)


@examples(200)
@given(TEMPLATES, AROUND)
def test_a_value_without_a_secret_or_home_is_left_alone(template: str, around: str) -> None:
    value = template + around
    # no credential word, no "://" user information or query, no home: nothing to redact
    if any(word in value for word in ("://", "/home", "/Users", "/root", "/mnt", "/c/", "/cygdrive", "pw", "pass",
                                      "key", "sig", "sas", "jwt", "auth", "?")):
        return
    assert redact_value(value) == value
