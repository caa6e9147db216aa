"""`pvinstall clone` (builder/clone.py) against libvirt's test driver (test:///default)
and the real qemu-img: every bad input and its siblings is exit 2 naming TEMPLATE, NAME
or --out, with nothing created; a template that is not generalized is cloned with the
warning; linked and full clones as qemu-img reads them."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.vm import existing, virt

pytestmark = pytest.mark.integration

URI = "test:///default"
TEMPLATE_XML = """<domain type='test'>
  <name>pvt-i14-template</name>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/nowhere/pv.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hda' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='user'>
      <mac address='52:54:00:12:34:56'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='/nowhere/serial.log'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


def qemu_img(*args: object) -> str:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    return subprocess.run(
        ["qemu-img", *map(str, args)], check=True, capture_output=True, text=True
    ).stdout


def make_out(tmp_path: Path, *, generalized: bool = True, **changes: Any) -> Path:
    """An OUT of a build with an exported template: a real qcow2, its template.xml and
    a manifest that lists them (`changes` replace fields of the template record)."""
    out = tmp_path / "out"
    gen = out / ".pvinstall" / "gen-0"
    gen.mkdir(parents=True)
    disk = gen / "template.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", disk, "64M")
    xml = existing.template_xml(TEMPLATE_XML, out / "template.qcow2", "qcow2")
    (gen / "template.xml").write_text(xml)
    info = json.loads(qemu_img("info", "--output=json", disk))
    record = {
        "disk": "template.qcow2",
        "format": "qcow2",
        "size": disk.stat().st_size,
        "virtual_size": info["virtual-size"],
        "sha256": "0" * 64,
        "generalized": generalized,
        "xml": "template.xml",
        "data_disks": [],
        **changes,
    }
    manifest = {
        "outputs": [{"name": "template.qcow2"}, {"name": "template.xml"}],
        "template": record,
    }
    (gen / "manifest.json").write_text(json.dumps(manifest))
    (out / ".pvinstall" / "current").symlink_to("gen-0")
    for name in ("template.qcow2", "template.xml", "manifest.json"):
        (out / name).symlink_to(f".pvinstall/current/{name}")
    return out


@pytest.fixture(autouse=True)
def held() -> Iterator[virt.Connection]:
    """test:///default keeps its state while a connection of the process is open."""
    with virt.connect(URI) as conn:
        yield conn


@pytest.fixture
def name(held: virt.Connection) -> Iterator[str]:
    value = f"pvt-i14-{uuid.uuid4().hex[:10]}"
    yield value
    virt.remove_domain(held, value)


def clone(
    capsys: pytest.CaptureFixture[str], template: str, clone_name: str, *extra: str
) -> tuple[int, dict[str, Any]]:
    code = cli.main(["clone", template, clone_name, "--connect", URI, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_linked_clone_backs_on_the_read_only_template(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    out = make_out(tmp_path)
    code, result = clone(capsys, str(out), name, "--out", str(tmp_path / "c"))
    assert code == 0, result
    overlay = tmp_path / "c" / f"{name}.qcow2"
    info = json.loads(qemu_img("info", "--output=json", overlay))
    real = (out / "template.qcow2").resolve()
    assert info["backing-filename"] == str(real)
    assert info["backing-filename-format"] == "qcow2"
    assert stat.S_IMODE(real.stat().st_mode) == 0o400
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600
    with virt.connect(URI) as conn:
        xml = virt.inactive_xml(conn, name)
    assert f"<source file='{overlay}'" in xml or f'<source file="{overlay}"' in xml
    assert "52:54:00:12:34:56" not in xml
    assert result["warnings"] == [] and result["linked"] is True


def test_a_full_clone_has_no_backing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    out = make_out(tmp_path)
    code, result = clone(capsys, str(out), name, "--out", str(tmp_path / "c"), "--full")
    assert code == 0, result
    info = json.loads(qemu_img("info", "--output=json", tmp_path / "c" / f"{name}.qcow2"))
    assert "backing-filename" not in info and result["linked"] is False


def test_a_template_that_is_not_generalized_is_cloned_with_the_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    out = make_out(tmp_path, generalized=False)
    code, result = clone(capsys, str(out), name, "--out", str(tmp_path / "c"))
    assert code == 0
    assert any("share one machine SID" in w for w in result["warnings"])


def _missing_disk(out: Path) -> None:
    (out / "template.qcow2").resolve().unlink()


def _raw_disk(out: Path) -> None:
    disk = (out / "template.qcow2").resolve()
    disk.unlink()
    disk.write_bytes(bytes(65536))


def _grown(out: Path) -> None:
    with (out / "template.qcow2").resolve().open("ab") as handle:
        handle.write(bytes(512))


def _no_template(out: Path) -> None:
    path = (out / "manifest.json").resolve()
    document = json.loads(path.read_text())
    del document["template"]
    path.write_text(json.dumps(document))


def _unlisted(out: Path) -> None:
    path = (out / "manifest.json").resolve()
    document = json.loads(path.read_text())
    document["outputs"] = [{"name": "template.xml"}]
    path.write_text(json.dumps(document))


def _outside(out: Path) -> None:
    path = (out / "manifest.json").resolve()
    document = json.loads(path.read_text())
    document["template"]["disk"] = "../../etc/passwd"
    path.write_text(json.dumps(document))


def _backed(out: Path) -> None:
    disk = (out / "template.qcow2").resolve()
    base = disk.with_name("base.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", base, "64M")
    disk.unlink()
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk)


BAD_TEMPLATES: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing backing file", _missing_disk, "backing file of a linked clone must exist"),
    ("format not the manifest's", _raw_disk, "is not a qcow2 image, as its manifest says"),
    ("changed since the build", _grown, "it changed after the build"),
    ("no template record", _no_template, "holds no template"),
    ("disk not listed", _unlisted, "does not list template.qcow2"),
    ("a path out of OUT", _outside, "names no usable template file"),
    ("a template with a backing file", _backed, "has a backing file"),
]


@pytest.mark.parametrize(
    ("what", "damage", "said"), BAD_TEMPLATES, ids=[b[0] for b in BAD_TEMPLATES]
)
def test_bad_templates_are_refused_naming_the_template(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    what: str,
    damage: Callable[[Path], None],
    said: str,
) -> None:
    out = make_out(tmp_path)
    damage(out)
    code, result = clone(capsys, str(out), name, "--out", str(tmp_path / "c"))
    assert code == 2, what
    problems = result["error"]["problems"]
    assert any(p["key"] == "TEMPLATE" and said in p["message"] for p in problems), problems
    assert not (tmp_path / "c").exists()
    with virt.connect(URI) as conn:
        assert not virt.domain_exists(conn, name)


def test_an_unknown_template_an_existing_name_and_disk_are_refused_in_one_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    code, result = clone(capsys, str(tmp_path / "nothing"), name)
    assert code == 2
    assert "unknown template" in result["error"]["problems"][0]["message"]
    out = make_out(tmp_path)
    # test:///default holds a domain named "test".
    code, result = clone(capsys, str(out), "test", "--out", str(tmp_path / "c"))
    assert code == 2
    assert [p["key"] for p in result["error"]["problems"]] == ["NAME"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / f"{name}.qcow2").write_bytes(b"mine")
    code, result = clone(capsys, str(out), name, "--out", str(tmp_path / "c"))
    assert code == 2 and result["error"]["problems"][0]["key"] == "--out"
    assert (tmp_path / "c" / f"{name}.qcow2").read_bytes() == b"mine"
    for bad in ("", "1234", "a/b"):
        code, result = clone(capsys, str(out), bad)
        assert code == 2 and result["error"]["problems"][0]["key"] == "NAME", bad


def test_a_running_template_domain_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # test:///default's domain "test" runs.
    code, result = clone(capsys, "test", "pvt-i14-x", "--out", str(tmp_path / "c"))
    assert code == 2
    assert "is running" in result["error"]["problems"][0]["message"]
