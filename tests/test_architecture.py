"""The import rules docs/ARCHITECTURE.md states: the table-only modules never import torch, only flows import
torch.ao."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_FREE = ["qreport/render", "qreport/guidance.py", "qreport/findings.py", "qreport/causes.py",
              "qreport/locations.py", "qreport/remedies.py", "qreport/verdict.py", "qreport/stats.py",
              "qreport/metrics.py", "qreport/schema.py", "qreport/store.py", "qreport/overrides.py"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _files(spec: str) -> list[Path]:
    path = ROOT / spec
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def test_table_only_modules_never_import_torch():
    for spec in TORCH_FREE:
        for path in _files(spec):
            torchy = {n for n in _imports(path) if n == "torch" or n.startswith("torch.")}
            assert not torchy, f"{path.relative_to(ROOT)} imports {sorted(torchy)}"


def test_only_flows_import_torch_ao():
    for path in sorted((ROOT / "qreport").rglob("*.py")):
        if "flows" in path.relative_to(ROOT).parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "torch.ao" not in text, f"{path.relative_to(ROOT)} names torch.ao; ask the flow instead"


def test_stages_use_the_flow_contract_only():
    """Stages, the context and the fix reach a quantization API only through ``ctx.flow`` (flows/contract.py); the
    pipeline picks the flow from the package's registry."""
    for path in sorted((ROOT / "qreport").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "flows" in rel.parts:
            continue
        flows = {n for n in _imports(path) if n.startswith("qreport.flows")}
        allowed = {"qreport.flows"} if rel.name == "pipeline.py" else set()
        assert flows <= allowed, f"{rel} imports {sorted(flows - allowed)}; use the flow contract"
