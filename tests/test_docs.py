"""The documentation site: it builds with warnings as errors, every public name has an API page, and the failures
that raise no warning (raw math, raw pipe tables, a mis-parsed parameter list) are absent from the pages."""
import importlib
import pkgutil
import re

import losstools


def public_modules():
    yield losstools
    for info in pkgutil.walk_packages(losstools.__path__, "losstools."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def lookup(dotted: str):
    """The object a dotted name points to, or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


def test_every_public_name_has_an_api_page(built_site):
    pages = [p.stem for p in (built_site / "generated").glob("*.html")]
    assert len(pages) > 100, "the API reference was not generated"
    documented = {}
    for dotted in pages:
        documented.setdefault(id(lookup(dotted)), set()).add(dotted.rsplit(".", 1)[-1])
    missing = [f"{module.__name__}.{name}" for module in public_modules() for name in getattr(module, "__all__", ())
               if name not in documented.get(id(getattr(module, name)), ())
               and getattr(getattr(module, name), "__name__", "").rsplit(".", 1)[-1] not in
               documented.get(id(getattr(module, name)), ())]
    assert missing == [], f"public names without an API page: {missing}"
    modules = [m.__name__ for m in public_modules()]
    assert [m for m in modules if m not in pages] == [], "public modules without an API page"


def test_pages_render_math_tables_and_parameters(built_site):
    lectures = sorted((built_site / "course").glob("0*.html"))
    assert len(lectures) == 5 and len(list((built_site / "course" / "exercises").glob("0*.html"))) == 5
    for page in [*lectures, built_site / "reproduction.html", built_site / "benchmarks.html"]:
        text = re.sub(r"<pre>.*?</pre>", "", page.read_text(), flags=re.DOTALL)   # not printed outputs
        assert "$$" not in re.sub(r"<[^>]+>", "", text), f"raw $$ math in {page.name}"
        assert "|---" not in text, f"a raw pipe table in {page.name}"
    assert "<table" in (built_site / "reproduction.html").read_text()
    assert not (built_site / "course" / "exercises" / "solutions").exists(), "solutions must not be published"
    objective = (built_site / "generated" / "losstools.objective.Objective.html").read_text()
    for name in ("model", "loss_fn", "data", "params", "ad_mode"):   # napoleon read each as a parameter
        assert re.search(rf"<strong>{name}</strong>", objective), name
    text = re.sub(r"<[^>]+>", "", objective)
    assert "Examples" in text and ">>> obj.num_params, obj.grad().shape" in text.replace("&gt;", ">"), "no example"
    assert (built_site / "generated" / "losstools.pruning.study.html").exists()


def test_the_site_states_the_readmes_commands():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme, index = (root / "README.md").read_text(), (root / "docs" / "index.md").read_text()
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        command = readme.split(marker)[1].split("```bash\n")[1].split("\n")[0]
        assert command in index, f"docs/index.md lost the README's command after {marker}"
