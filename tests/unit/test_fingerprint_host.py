"""Host, memory, environment, loaded-library and Python collectors: pure parsers on real text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from envlock.environ import capture_environment, is_allowed
from envlock.fingerprint.host import collect_host, detect_container_runtime, parse_glibc, parse_os_release
from envlock.fingerprint.loaded_libs import parse_library_filename, parse_proc_maps
from envlock.fingerprint.memory import collect_memory, count_numa_nodes, parse_meminfo_total
from envlock.fingerprint.numeric import parse_threadpool_info, simd_in_use
from envlock.fingerprint.python_env import distributions_from, normalize_name, record_digest
from envlock.runner import FakeRunner

# /etc/os-release of this machine (Debian 12) and Ubuntu 22.04's (as shipped by base-files).
DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
CGROUP_V1_DOCKER = "12:cpuset:/docker/3f6a7b5c1d2e\n11:memory:/docker/3f6a7b5c1d2e\n"
CGROUP_K8S = "0::/kubepods/besteffort/pod1234/abcdef\n"


def test_os_release() -> None:
    fields = parse_os_release(DEBIAN_12)
    assert fields["NAME"] == "Debian GNU/Linux"
    assert fields["VERSION_ID"] == "12"
    assert fields["ID"] == "debian"


@pytest.mark.parametrize(("raw", "version"), [("glibc 2.36", "2.36"), ("glibc 2.17", "2.17"), ("", None), (None, None)])
def test_glibc(raw: str | None, version: str | None) -> None:
    assert parse_glibc(raw) == version


@pytest.mark.parametrize(
    ("kwargs", "runtime"),
    [
        ({"dockerenv": True, "containerenv": False, "cgroup_text": "0::/\n", "environ": {}}, "docker"),
        ({"dockerenv": False, "containerenv": False, "cgroup_text": CGROUP_V1_DOCKER, "environ": {}}, "docker"),
        ({"dockerenv": False, "containerenv": False, "cgroup_text": CGROUP_K8S, "environ": {}}, "kubernetes"),
        ({"dockerenv": True, "containerenv": False, "cgroup_text": None,
          "environ": {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}}, "kubernetes"),
        ({"dockerenv": False, "containerenv": True, "cgroup_text": None, "environ": {}}, "podman"),
        ({"dockerenv": False, "containerenv": False, "cgroup_text": "0::/init.scope\n", "environ": {}}, "none"),
    ],
)
def test_container_runtime(kwargs: dict, runtime: str) -> None:
    assert detect_container_runtime(**kwargs) == runtime


def test_collect_host_from_files() -> None:
    runner = FakeRunner(files={"/etc/os-release": DEBIAN_12, "/proc/sys/kernel/osrelease": "6.18.44-fc-v595\n",
                               "/.dockerenv": "", "/proc/1/cgroup": "0::/\n"})
    host = collect_host(runner, {})
    assert (host.distro, host.distro_version, host.kernel) == ("Debian GNU/Linux", "12", "6.18.44-fc-v595")
    assert host.container_runtime == "docker"


def test_collect_host_without_files_is_none_not_unknown() -> None:
    host = collect_host(FakeRunner(), {})
    assert host.distro is None and host.distro_version is None
    assert host.container_runtime == "none"


def test_meminfo_and_numa() -> None:
    assert parse_meminfo_total("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24684096 * 1024
    assert parse_meminfo_total("nothing") is None
    assert count_numa_nodes(["has_cpu", "node0", "node1", "online", "possible"]) == 2
    assert count_numa_nodes(None) is None
    files = {"/proc/meminfo": "MemTotal: 1024 kB\n", "/sys/devices/system/node/node0/x": ""}
    mem = collect_memory(FakeRunner(files=files))
    assert (mem.total_bytes, mem.numa_nodes) == (1024 * 1024, 1)


def test_environment_allow_list_keeps_numerics_and_drops_secrets() -> None:
    environ = {
        "TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false", "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "0", "PYTHONHASHSEED": "0", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root", "PATH": "/bin", "TF_VAR_db_password": "hunter2",
        "TF_TOKEN_app_terraform_io": "t", "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "TF_API_TOKEN": "t",
        "tf_lowercase": "x",
    }
    kept = capture_environment(environ)
    assert list(kept) == sorted(kept)
    assert set(kept) == {"TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
                         "PYTHONHASHSEED", "ONEDNN_MAX_CPU_ISA"}
    assert not is_allowed("GITHUB_TOKEN") and is_allowed("KMP_AFFINITY") and is_allowed("TF_DETERMINISTIC_OPS")


@pytest.mark.parametrize(
    "name",
    [
        # Terraform / OpenTofu share TF_; these carry passphrases, credentials or backend URLs.
        "TF_ENCRYPTION", "TF_HTTP_ADDRESS", "TF_HTTP_USERNAME", "TF_HTTP_PASSWORD", "TF_CLOUD_ORGANIZATION",
        "TF_REATTACH_PROVIDERS", "TF_WORKSPACE", "TF_LOG", "TF_INPUT", "TF_DATA_DIR", "TF_AWS_ACCESS_KEY",
        "TF_PRIVATE_KEY", "TF_GCS_SIGNED_URL",
        # credentials inside otherwise-allowed numeric families
        "MKL_LICENSE_PASS", "NCCL_SOCKET_CERT", "KERAS_HOME_TOKEN", "OMP_SESSION_SECRET",
    ],
)
def test_secret_like_and_terraform_names_are_refused(name: str) -> None:
    assert not is_allowed(name)


@pytest.mark.parametrize(
    "name",
    ["TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "TF_CUDNN_USE_AUTOTUNE",
     "TF_XLA_FLAGS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_GPU_ALLOCATOR",
     "TF_FORCE_GPU_ALLOW_GROWTH", "TF_USE_LEGACY_KERAS", "TF_ENABLE_ZENDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL",
     "ONEDNN_MAX_CPU_ISA", "OPENBLAS_NUM_THREADS", "NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG"],
)
def test_tensorflow_and_numeric_library_variables_are_kept(name: str) -> None:
    assert is_allowed(name)


def test_a_value_with_credentials_in_a_url_is_redacted() -> None:
    kept = capture_environment({"XLA_FLAGS": "--xla_dump_to=s3://AKIA:secret@bucket/x", "OMP_NUM_THREADS": "2"})
    assert kept == {"XLA_FLAGS": "--xla_dump_to=s3://REDACTED@bucket/x", "OMP_NUM_THREADS": "2"}


MAPS_DIR = Path(__file__).resolve().parent.parent / "data" / "proc_maps"


def test_proc_maps_of_a_real_tf_process() -> None:
    # /proc/self/maps of `import tensorflow` (2.21.0 CPU) on this machine: oneDNN is linked into
    # libtensorflow_framework, numpy brings its OpenBLAS; libc and TF's own pywrap modules are not numeric libraries.
    libs = parse_proc_maps((MAPS_DIR / "tf_2.21_cpu_this_machine.txt").read_text())
    names = [lib.name for lib in libs]
    assert names == sorted(names)
    assert {"libtensorflow_framework", "libtensorflow_cc", "libscipy_openblas64_"} <= set(names)
    assert "libc" not in names and not any(name.startswith("_pywrap") for name in names)
    assert len(names) == len({lib.path for lib in libs})  # one entry per file, not per mapping
    assert all(lib.path and lib.path.startswith("/") for lib in libs)
    assert parse_proc_maps("") == []
    assert parse_proc_maps("not a maps file\n") == []


@pytest.mark.parametrize(
    ("filename", "parsed"),
    [("libcudart.so.12.4.127", ("libcudart", "12.4.127")), ("libgomp-a34b3233.so.1.0.0", ("libgomp", "1.0.0")),
     ("libcudnn.so.9", ("libcudnn", "9")), ("libcublasLt.so.12", ("libcublasLt", "12")),
     ("libcudnn_ops_infer.so.8", ("libcudnn_ops_infer", "8")), ("libnccl.so.2", ("libnccl", "2")),
     ("libiomp5.so", ("libiomp5", None)), ("libc.so.6", None), ("_pywrap_tensorflow.so", None)],
)
def test_library_file_names(filename: str, parsed: tuple[str, str | None] | None) -> None:
    assert parse_library_filename(filename) == parsed


def test_threadpoolctl_entries() -> None:
    # threadpoolctl.threadpool_info() on this machine (numpy 2.4.6 wheel).
    entries = [{"user_api": "blas", "internal_api": "openblas", "num_threads": 2, "prefix": "libscipy_openblas",
                "filepath": "/work/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so",
                "version": "0.3.31.188.0", "threading_layer": "pthreads", "architecture": "SkylakeX"}]
    (blas,) = parse_threadpool_info(entries)
    assert blas.filename == "libscipy_openblas64_-32a4b2a6.so"  # the path is dropped, the build hash kept
    assert (blas.version, blas.architecture, blas.num_threads) == ("0.3.31.188.0", "SkylakeX", 2)


def test_simd_dispatch_keeps_only_what_this_cpu_supports() -> None:
    baseline, dispatch = simd_in_use(["X86_V2"], ["X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR"],
                                     {"X86_V3": True, "X86_V4": True, "AVX512_ICL": True, "AVX512_SPR": False})
    assert baseline == ["X86_V2"]
    assert dispatch == ["AVX512_ICL", "X86_V3", "X86_V4"]
    assert simd_in_use(None, None, None) == (None, None)


class _Dist:
    def __init__(self, name: str, version: str, record: str | None) -> None:
        self.metadata = {"Name": name}
        self.version = version
        self._record = record

    def read_text(self, filename: str) -> str | None:
        return self._record if filename == "RECORD" else None


def test_distributions_carry_a_record_digest_and_first_wins() -> None:
    dists = [_Dist("NumPy", "2.4.6", "numpy/__init__.py,sha256=abc,100\n"), _Dist("numpy", "1.26.4", "other"),
             _Dist("Typing_Extensions", "4.12", None), _Dist("envlock", "0.1.0", "x")]
    found = distributions_from(dists)
    assert [(d.name, d.version) for d in found] == [("numpy", "2.4.6"), ("typing-extensions", "4.12")]
    assert found[0].record_sha256 == hashlib.sha256(b"numpy/__init__.py,sha256=abc").hexdigest()
    assert found[1].record_sha256 is None
    assert normalize_name("Foo.Bar_baz") == "foo-bar-baz"


def test_same_version_built_differently_is_told_apart() -> None:
    a = distributions_from([_Dist("numpy", "2.4.6", "numpy/x.so,sha256=AAA,1\n")])
    b = distributions_from([_Dist("numpy", "2.4.6", "numpy/x.so,sha256=BBB,1\n")])
    assert a[0].version == b[0].version and a[0].record_sha256 != b[0].record_sha256


def test_same_wheel_installed_twice_gives_the_same_record_digest() -> None:
    # Real RECORD files of one wheel installed into two venvs (other paths, one without
    # bytecode): the console script's shebang and the .pyc lines differ, the wheel does not.
    records = Path(__file__).resolve().parent.parent / "data" / "records"
    a = (records / "wheel-0.45.1.venv-a.RECORD").read_text()
    b = (records / "wheel-0.45.1.venv-b-no-compile.RECORD").read_text()
    assert a != b
    assert record_digest(a) == record_digest(b)
    tampered = b.replace("wheel/cli/__init__.py,sha256=", "wheel/cli/__init__.py,sha256=X", 1)
    assert record_digest(tampered) != record_digest(b)


def test_data_dir_exists() -> None:
    assert (Path(__file__).resolve().parent.parent / "data" / "README.md").exists()




def test_distribution_cache_serves_unchanged_dists_and_never_a_stale_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon re-fingerprints every minute: an unchanged dist-info is served from the cache,
    a reinstall (RECORD rewritten: new size or mtime) is read again."""
    from importlib.metadata import PathDistribution

    from envlock.fingerprint import python_env

    info = tmp_path / "demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\n")
    (info / "RECORD").write_text("demo/__init__.py,sha256=AAAA,1\n")
    dist = PathDistribution(info)
    first = distributions_from([dist])
    assert [(d.name, d.version) for d in first] == [("demo", "1.0")]
    reads: list[object] = []
    real_read = python_env.read_distribution
    monkeypatch.setattr(python_env, "read_distribution", lambda d: reads.append(d) or real_read(d))
    assert distributions_from([dist]) == first and reads == []  # served from the cache
    (info / "RECORD").write_text("demo/__init__.py,sha256=BBBBBB,1\n")  # a rebuilt wheel, same version
    rebuilt = distributions_from([dist])
    assert len(reads) == 1 and rebuilt[0].record_sha256 != first[0].record_sha256
