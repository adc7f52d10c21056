"""Property tests: archive and path handling and every YAML input never raise out of the public
functions, whatever the bytes (arbitrary, truncated, mutated real samples)."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exhunt import safe_yaml
from exhunt.collection import Entry, Skipped, _safe_member_name, escaped_name, open_collection
from exhunt.errors import InputError, RuleError
from tests.fuzz.conftest import keep_failure

BUILTIN = Path(__file__).resolve().parents[2] / "src/exhunt/rules/builtin"
RULE_SAMPLES = [p.read_bytes() for p in sorted(BUILTIN.glob("*.yaml"))[:8]]
IOC_SAMPLE = (Path(__file__).resolve().parents[2] / "src/exhunt/iocs/data/builtin.yaml").read_bytes()[:6000]


def _sample_zip() -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/u_ex210303.log", b"#Software: Microsoft Internet Information Services 10.0\r\n" * 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("EXCH01/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", b"#Fields: date time\r\n" * 50)
        zf.writestr("./EXCH01/x.log", b"one")
        zf.writestr("EXCH01\\x.log", b"two")
        zf.writestr("EXCH01/inner.zip", inner.getvalue())
        zf.writestr("EXCH01/stored.bin", b"\x00" * 300, compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


SAMPLE_ZIP = _sample_zip()


@st.composite
def mutated(draw: st.DrawFn, sample: bytes) -> bytes:
    """A sample truncated at any point, with bytes overwritten, inserted or zeroed."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete", "nul-run"]))
        if action == "set":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at : at + 64] = bytes(min(64, len(data) - at))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _read_everything(path: Path) -> None:
    """Open a collection and read every entry: only InputError (whole input) or OSError (one entry)."""
    try:
        col = open_collection(path)
    except InputError:
        return
    try:
        for e in col.entries():
            assert isinstance(e, Entry | Skipped)
            if isinstance(e, Entry):
                try:
                    with col.open(e.path) as fh:
                        while fh.read(1 << 16):
                            pass
                except OSError:
                    pass
    finally:
        col.close()


@given(data=st.one_of(mutated(SAMPLE_ZIP), st.binary(max_size=2048)))
def test_zip_collections_never_raise(tmp_path_factory: pytest.TempPathFactory, data: bytes):
    path = tmp_path_factory.mktemp("z") / "c.zip"
    path.write_bytes(data)
    keep_failure("zip", data, lambda: _read_everything(path))


@given(name=st.text(max_size=60))
def test_member_names_are_safe_or_refused(name: str):
    safe = _safe_member_name(name.replace("\\", "/"))
    if safe is not None:
        parts = safe.split("/")
        assert ".." not in parts and "" not in parts and not safe.startswith("/")


@given(raw=st.binary(min_size=1, max_size=40))
def test_any_byte_name_becomes_text(raw: bytes):
    import os

    text = escaped_name(os.fsdecode(raw))
    text.encode("utf-8")  # never raises: every byte that is not UTF-8 is \xNN


@given(data=st.one_of(*(mutated(s) for s in RULE_SAMPLES), st.binary(max_size=512)))
def test_rule_files_never_raise_but_rule_error(tmp_path_factory: pytest.TempPathFactory, data: bytes):
    from exhunt.rules.model import load_rule_file

    path = tmp_path_factory.mktemp("r") / "rule.yaml"
    path.write_bytes(data)

    def check() -> None:
        with contextlib.suppress(RuleError):
            load_rule_file(path)

    keep_failure("rule", data, check)


@given(data=st.one_of(mutated(IOC_SAMPLE), st.binary(max_size=512)))
def test_ioc_packs_never_raise_but_rule_error(tmp_path_factory: pytest.TempPathFactory, data: bytes):
    from exhunt.iocs import load_iocs

    path = tmp_path_factory.mktemp("i") / "pack.yaml"
    path.write_bytes(data)

    def check() -> None:
        with contextlib.suppress(RuleError):
            load_iocs([path])

    keep_failure("ioc", data, check)


SIGMA = b"""title: t
id: 5f2a8c3e-1111-4a4a-9b9b-000000000001
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4624
    TargetUserName|contains: admin
  condition: sel
level: high
"""


@given(data=st.one_of(mutated(SIGMA), st.binary(max_size=256)))
def test_sigma_files_never_raise_but_rule_error(tmp_path_factory: pytest.TempPathFactory, data: bytes):
    from exhunt.rules.sigma_load import check_sigma

    path = tmp_path_factory.mktemp("s") / "rule.yml"
    path.write_bytes(data)

    def check() -> None:
        with contextlib.suppress(RuleError):
            check_sigma([path])

    keep_failure("sigma", data, check)


@given(text=st.text(max_size=300))
def test_safe_yaml_raises_only_yaml_errors(text: str):
    def check() -> None:
        with contextlib.suppress(yaml.YAMLError):
            safe_yaml.load_all(text)

    keep_failure("yaml", text.encode("utf-8", "surrogatepass"), check)
