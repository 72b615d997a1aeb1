"""Plugin loading: built-ins, the example package, faulty plugins, duplicates and hook docs."""

import importlib
import inspect
import sys
import textwrap
from pathlib import Path

import pytest

from biaslab import hookspecs
from biaslab.errors import PluginError
from biaslab.plugins import PluginLoadWarning, load_plugins

REPO_ROOT = Path(__file__).resolve().parents[1]

GOOD_PLUGIN = """
from biaslab import hookimpl
from biaslab.biases import BiasSpec
from biaslab.default_plugins.biases import apply_none

@hookimpl
def biaslab_register_biases(register):
    register(BiasSpec(name="{name}", description="test bias", apply=apply_none, takes_pct=False))
"""


def install_fake_distribution(root: Path, package: str, entry_name: str, module: str, source: str) -> None:
    """Write a module and a dist-info folder with a ``biaslab`` entry point, as pip would."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = root / f"{package.replace('-', '_')}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[biaslab]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    importlib.invalidate_caches()
    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]


def test_builtins_registered_through_hooks():
    loaded = load_plugins(entry_points=False)
    assert loaded.names("bias") == ["gaussian", "mislabel", "none", "size"]
    assert {entry.package for entry in loaded.registries["bias"].values()} == {"biaslab"}
    assert loaded.failed == []


def test_example_plugin_found_by_entry_point():
    loaded = load_plugins()
    entry = loaded.registries["bias"].get("flip")
    assert entry is not None, "install the example with: pip install -e plugins/biaslab-flip"
    assert entry.package == "biaslab-flip"


def test_third_party_plugin_loads(site):
    install_fake_distribution(site, "fake-good", "good", "fake_good", GOOD_PLUGIN.format(name="tilt"))
    loaded = load_plugins()
    assert loaded.registries["bias"]["tilt"].package == "fake-good"


def test_import_failure_warns_and_keeps_builtins(site):
    install_fake_distribution(site, "fake-broken", "broken", "fake_broken", "raise ImportError('no module named torch')\n")
    with pytest.warns(PluginLoadWarning, match="'broken' from package 'fake-broken' failed to load.*torch"):
        loaded = load_plugins()
    assert "size" in loaded.names("bias")
    assert [failure.name for failure in loaded.failed] == ["broken"]
    assert "fake-broken" in loaded.failed_tag()


def test_hook_not_matching_spec_warns(site):
    source = """
    from biaslab import hookimpl

    @hookimpl
    def biaslab_register_biases(registrar, extra):
        pass
    """
    install_fake_distribution(site, "fake-mismatch", "mismatch", "fake_mismatch", source)
    with pytest.warns(PluginLoadWarning, match="'mismatch' from package 'fake-mismatch' was not registered"):
        loaded = load_plugins()
    assert "none" in loaded.names("bias")
    assert "fake-mismatch" in loaded.failed_tag()


def test_hook_raising_warns(site):
    source = """
    from biaslab import hookimpl

    @hookimpl
    def biaslab_register_biases(register):
        raise RuntimeError("database unreachable")
    """
    install_fake_distribution(site, "fake-raising", "raising", "fake_raising", source)
    with pytest.warns(PluginLoadWarning, match="failed in biaslab_register_biases.*database unreachable"):
        loaded = load_plugins()
    assert "mislabel" in loaded.names("bias")


def test_duplicate_name_names_both_packages(site):
    install_fake_distribution(site, "fake-first", "first", "fake_first", GOOD_PLUGIN.format(name="twin"))
    install_fake_distribution(site, "fake-second", "second", "fake_second", GOOD_PLUGIN.format(name="twin"))
    with pytest.raises(PluginError, match="bias 'twin' is registered twice") as raised:
        load_plugins()
    assert "'fake-first'" in str(raised.value)
    assert "'fake-second'" in str(raised.value)


def test_duplicate_of_builtin_is_error(site):
    install_fake_distribution(site, "fake-shadow", "shadow", "fake_shadow", GOOD_PLUGIN.format(name="size"))
    with pytest.raises(PluginError, match="bias 'size' is registered twice.*'biaslab'.*'fake-shadow'"):
        load_plugins()


def test_item_without_name_rejected(site):
    source = """
    from biaslab import hookimpl

    @hookimpl
    def biaslab_register_biases(register):
        register(object())
    """
    install_fake_distribution(site, "fake-nameless", "nameless", "fake_nameless", source)
    with pytest.raises(PluginError, match="'nameless' \\(fake-nameless\\) registered a bias without a string 'name'"):
        load_plugins()


def test_every_hook_is_documented_and_tested():
    specs = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("biaslab_")]
    assert specs, "no hook specs found"
    readme = (REPO_ROOT / "README.md").read_text()
    tests = "".join(path.read_text() for path in (REPO_ROOT / "tests").glob("test_*.py") if path.name != "test_plugins.py")
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert ":param register:" in doc, f"{name} has no parameter documentation"
        assert name in readme, f"{name} is not documented in README.md"
        kind = name.removeprefix("biaslab_register_")
        assert f'"{kind[:-1] if kind.endswith("s") else kind}"' in tests or name in tests, f"{name} has no test"
