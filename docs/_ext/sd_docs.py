"""Sphinx directives for the softmax-dispatch site: nothing on a page is pasted output.

- ``exec-python``: a Python block that runs when the page is built; the page shows the
  code (unless ``:hide-code:``) and what it printed (``:output: text``, the default, as a
  literal block; ``markdown``, parsed as MyST, for tables; ``none``). The blocks of one
  page share a namespace and run in order, as ``tests/test_docs.py`` runs them. An
  exception fails the build.
- ``bench-table``: the tables of a committed ``softmax-dispatch bench --json`` file.
- ``bench-plot``: the figure of such a file, drawn when the page is built.
- MathJax is served from the site itself (the ``sphinx-mathjax-offline`` package's copy):
  no page fetches anything from elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import traceback
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

from softmax_dispatch.bench import _report

# the MathJax files a page with math loads (tex-chtml bundles TeX input and CHTML output)
_MATHJAX_FILES = ("tex-chtml.js", "output/chtml/fonts/woff-v2")


def _namespace(directive: SphinxDirective) -> dict[str, Any]:
    env = directive.env
    store = env.temp_data.setdefault("sd_exec_namespaces", {})
    return store.setdefault(env.docname, {"__name__": "__docs__"})


class ExecPython(SphinxDirective):
    """Run a Python block at build time; show the code and what it printed."""

    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {
        "hide-code": directives.flag,
        "output": lambda arg: directives.choice(arg, ("text", "markdown", "none")),
    }

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{self.env.docname}.md", "exec"), _namespace(self))
        except Exception:
            raise self.severe(
                f"exec-python block in {self.env.docname} raised:\n{traceback.format_exc()}"
            ) from None
        result: list[nodes.Node] = []
        if "hide-code" not in self.options:
            block = nodes.literal_block(code, code, language="python")
            result.append(block)
        printed = out.getvalue().rstrip("\n")
        kind = self.options.get("output", "text")
        if printed and kind == "text":
            shown = nodes.literal_block(printed, printed, language="none")
            shown["classes"].append("sd-output")
            result.append(shown)
        elif printed and kind == "markdown":
            container = nodes.container(classes=["sd-generated"])
            self.state.nested_parse(StringList(printed.splitlines()), 0, container)
            result.append(container)
        return result


def _bench_file(directive: SphinxDirective) -> tuple[Path, dict[str, Any]]:
    path = Path(directive.env.srcdir) / directive.arguments[0]
    directive.env.note_dependency(str(path))
    return path, json.loads(path.read_text())


class BenchTable(SphinxDirective):
    """The tables of a committed bench JSON file, with its machine, command and date."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        _, data = _bench_file(self)
        container = nodes.container(classes=["sd-generated"])
        text = _report.markdown(data)
        self.state.nested_parse(StringList(text.splitlines()), 0, container)
        return [container]


class BenchPlot(SphinxDirective):
    """The figure of a committed bench JSON file, drawn at build time."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path, data = _bench_file(self)
        generated = Path(self.env.srcdir) / "_generated"
        generated.mkdir(exist_ok=True)
        image = generated / f"{path.stem}.png"
        _report.plot(data, str(image))
        m = data["machine"]
        alt = f"softmax-dispatch bench --backend {m['backend']}: time of each implementation / ours"
        node = nodes.image(uri=f"_generated/{image.name}", alt=alt)
        node["classes"].append("sd-bench-plot")
        return [node]


def _copy_mathjax(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    import importlib.util

    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise ExtensionError("the docs need sphinx-mathjax-offline: pip install -e '.[docs]'")
    source = Path(spec.origin).parent / "static" / "mathjax"
    target = Path(app.outdir) / "_static" / "mathjax"
    for name in _MATHJAX_FILES:
        src, dst = source / name, target / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("exec-python", ExecPython)
    app.add_directive("bench-table", BenchTable)
    app.add_directive("bench-plot", BenchPlot)
    app.config.mathjax_path = "mathjax/tex-chtml.js"
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
