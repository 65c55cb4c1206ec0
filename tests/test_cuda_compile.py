"""Every CUDA source and template instantiation compiles for sm_80 and sm_90 (no GPU needed).

NVRTC through CuPy's low-level binding: any compiler log fails. nvcc (when
present): ``--Werror all-warnings``, ptxas spill and local-memory warnings as
errors, zero spills, no stack, registers within the launch bounds, and PTX that
contains the 16-byte non-coherent loads and the warp shuffles the design relies
on. Each (source, arch) is compiled once per module, two compiles at a time.
"""

import concurrent.futures as cf
import re

import pytest

from iirssm._cuda import _compile

nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
if not _compile.nvrtc_available():  # pragma: no cover - depends on the wheel
    pytest.skip("NVRTC is not available", allow_module_level=True)

ARCHS = ("sm_80", "sm_90")
MODULES = _compile.load_all()
SOURCES = sorted(MODULES)
OURS = {"recurrence.cu", "ema.cu", "iir.cu", "ssm.cu"}


@pytest.fixture(scope="module")
def builds():
    """Start every compile (NVRTC and nvcc, each source x arch) two at a time."""
    pool = cf.ThreadPoolExecutor(max_workers=2)
    futs = {}
    for src in SOURCES:
        for arch in ARCHS:
            futs[("nvrtc", src, arch)] = pool.submit(_compile.nvrtc_compile, src,
                                                     MODULES[src], arch)
    if _compile.nvcc_available():
        for src in SOURCES:
            for arch in ARCHS:
                futs[("nvcc", src, arch)] = pool.submit(_compile.nvcc_compile, src,
                                                        MODULES[src], arch,
                                                        ptx=src == "recurrence.cu")
    yield futs
    pool.shutdown(wait=True, cancel_futures=True)


def test_registry_lists_every_source():
    on_disk = {p.name for p in _compile.source_path("common.cuh").parent.glob("*.cu")}
    assert on_disk <= set(MODULES), f"sources without registered kernels: {on_disk - set(MODULES)}"
    for src, exprs in MODULES.items():
        assert exprs, src
        assert len(set(exprs)) == len(exprs)


def test_source_text_expands_headers():
    text = _compile.source_text("recurrence.cu")
    assert '#include "' not in text
    assert "tile_scan" in text and "fwd_body" in text
    assert "#pragma once" not in text


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", SOURCES)
def test_nvrtc_compiles_without_warnings(builds, src, arch):
    res = builds[("nvrtc", src, arch)].result()
    assert res.log == "", f"NVRTC log for {src} ({arch}):\n{res.log}"
    assert len(res.cubin) > 1000
    assert set(res.lowered) == set(MODULES[src])
    assert all(v.startswith("_Z") for v in res.lowered.values())


def _nvcc(builds, src, arch):
    if not _compile.nvcc_available():
        pytest.skip("nvcc is not available")
    return builds[("nvcc", src, arch)].result()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", SOURCES)
def test_nvcc_no_spills_registers_within_bounds(builds, src, arch):
    res = _nvcc(builds, src, arch)
    lowered = builds[("nvrtc", src, arch)].result().lowered
    assert set(lowered.values()) <= set(res.resources), "a kernel is missing from nvcc's report"
    for name, r in res.resources.items():
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, (name, r)
        assert r.get("stack", 0) == 0 and r.get("local", 0) == 0, (name, r)
        # __launch_bounds__(128, 4): at most 65536 / 512 = 128 registers per thread
        limit = 128 if src in OURS else 255
        assert r["registers"] <= limit, (name, r)


@pytest.mark.parametrize("arch", ARCHS)
def test_ptx_has_vector_loads_and_shuffles(builds, arch):
    res = _nvcc(builds, "recurrence.cu", arch)
    ptx = res.ptx
    assert "ld.global.nc.v4.f32" in ptx        # float / complex<float> 16-byte loads
    assert "ld.global.nc.v2.f64" in ptx        # double / complex<double>
    assert "st.global.v4.f32" in ptx
    assert re.search(r"shfl\.sync\.up", ptx)   # forward warp scans
    assert re.search(r"shfl\.sync\.down", ptx)  # reverse scans and the adjoint
    assert ".local" not in ptx


def test_parse_resources_formats():
    text = ("ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90'\n"
            "ptxas info    : Function properties for _Z1kPf\n"
            "    0 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads\n"
            "ptxas info    : Used 40 registers, used 1 barriers\n"
            "Resource usage:\n Common:\n  GLOBAL:0\n Function _Z1kPf:\n"
            "  REG:40 STACK:16 SHARED:128 LOCAL:0 CONSTANT[0]:400 TEXTURE:0\n")
    r = _compile._parse_resources(text)["_Z1kPf"]
    assert r["registers"] == 40 and r["spill_stores"] == 4 and r["spill_loads"] == 8
    assert r["stack"] == 16 and r["shared"] == 128


def test_unknown_name_expression_is_a_clear_error():
    with pytest.raises(KeyError, match="not registered"):
        _compile.get_function("recurrence.cu", "rec_fwd<int, false>")
