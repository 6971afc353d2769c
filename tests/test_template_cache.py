"""Compiled mako templates are kept per template text, so a changed template is never served stale."""
from __future__ import annotations

import os

import pytest

from clnet.backend import programs, render

TEMPLATE = "__kernel void k(__global float *x) { x[get_global_id(0)] = ${value}; }\n"


@pytest.fixture
def fresh_lookup(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    (kernels / "elementwise.cl.mako").write_text(TEMPLATE)
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(render, "kernel_dir", lambda: kernels)
    render.forget_lookup()
    yield kernels, tmp_path / "cache" / "mako"
    render.forget_lookup()


def test_compiled_template_is_stored_under_a_hash_of_the_templates(fresh_lookup):
    kernels, modules = fresh_lookup
    assert "= 2.5f;" in programs.render("elementwise.cl.mako", value="2.5f")
    first = [p for p in modules.rglob("*.py")]
    assert [p.name for p in first] == ["elementwise.cl.mako.py"]

    # same text with an older modification time (as a pip install leaves it): a new key, a new module
    path = kernels / "elementwise.cl.mako"
    path.write_text(TEMPLATE.replace("= ${value};", "= 2 * ${value};"))
    os.utime(path, (1_000_000, 1_000_000))
    render.forget_lookup()
    assert "= 2 * 3.0f;" in programs.render("elementwise.cl.mako", value="3.0f")
    dirs = sorted(p.name for p in modules.iterdir())
    assert len(dirs) == 2 and first[0].parent.name in dirs


def test_clear_cache_removes_compiled_templates(fresh_lookup):
    _, modules = fresh_lookup
    programs.render("elementwise.cl.mako", value="1.0f")
    assert any(modules.rglob("*.py"))
    programs.clear_cache()
    assert not modules.exists()
    assert "= 4.0f;" in programs.render("elementwise.cl.mako", value="4.0f")  # still renders afterwards
