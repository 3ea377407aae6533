"""The committed generated code matches protos/ (no network or generator needed).

MANIFEST.json, written by protos/generate.sh, records the sha256 of every
.proto input and every generated file. Editing a .proto without regenerating,
or editing generated code by hand, fails here. CI can additionally run
``protos/generate.sh --check``, which regenerates with the pinned tools and diffs.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

PROTO_ROOT_CANDIDATES = ("protos", "../../protos")


def _manifest() -> dict[str, dict[str, str]]:
    text = resources.files("mockaccel_node_agent._generated").joinpath("MANIFEST.json").read_text()
    loaded: dict[str, dict[str, str]] = json.loads(text)
    return loaded


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_generated_files_are_unedited() -> None:
    package = resources.files("mockaccel_node_agent._generated")
    outputs = _manifest()["outputs"]
    assert "k8s/io/kubelet/pkg/apis/dra/v1/__init__.py" in outputs
    for relative, digest in outputs.items():
        assert _sha(package.joinpath(relative).read_bytes()) == digest, f"{relative} differs from its generation"


def test_protos_match_what_was_generated() -> None:
    root = next((Path(c) for c in PROTO_ROOT_CANDIDATES if (Path(c) / "k8s.io").is_dir()), None)
    assert root is not None, "protos/ is not in the test sandbox (BUILD dependency on //protos:protos)"
    for name, digest in _manifest()["inputs"].items():
        assert _sha((root / name).read_bytes()) == digest, f"{name} changed: run protos/generate.sh"
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.proto")}
    assert on_disk == set(_manifest()["inputs"]), "a .proto was added or removed: list it in protos/generate.sh"


def test_wire_contract_of_the_generated_services() -> None:
    from mockaccel_node_agent._generated import pluginregistration, v1alpha1
    from mockaccel_node_agent._generated.k8s.io.kubelet.pkg.apis.dra import v1, v1beta1

    assert set(v1.DraPluginBase().__mapping__()) == {
        "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources",
        "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources",
    }
    assert set(v1beta1.DraPluginBase().__mapping__()) == {
        "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources",
        "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources",
    }
    assert set(pluginregistration.RegistrationBase().__mapping__()) == {
        "/pluginregistration.Registration/GetInfo",
        "/pluginregistration.Registration/NotifyRegistrationStatus",
    }
    assert set(v1alpha1.DraResourceHealthBase().__mapping__()) == {"/v1alpha1.DRAResourceHealth/NodeWatchResources"}
    # Field numbers: a Device with share_id set encodes field 5 as a length-delimited string (tag 0x2a).
    encoded = bytes(v1.Device(pool_name="p", device_name="d", share_id="s"))
    assert encoded == b"\x12\x01p\x1a\x01d\x2a\x01s"
    assert bytes(v1beta1.Device(pool_name="p", device_name="d")) == b"\x12\x01p\x1a\x01d"
