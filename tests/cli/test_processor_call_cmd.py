"""``fluvial processor call NAME``: stdin's lines into one call, its outputs printed."""

from __future__ import annotations

import subprocess

FUNCTION = '''
def shout(value):
    if value == b"boom":
        raise ValueError("no good: boom")
    return value.upper()
'''


def test_processor_call_prints_the_outputs_and_reports_the_function_error(local_cluster, fresh_topic, tmp_path):
    (tmp_path / "shoutfn.py").write_text(FUNCTION)
    src, dst = fresh_topic(), fresh_topic()
    for t in (src, dst):
        assert local_cluster.invoke("topic", "create", t).exit_code == 0
    r = local_cluster.invoke("processor", "create", "shout", "--function", "shoutfn:shout", "--input", src,
                             "--output", dst, "--window-count", "1", "--path", str(tmp_path))
    assert r.exit_code == 0, r.output
    runtime = subprocess.Popen([str(local_cluster.script), "run", "processor", "shout"], env=local_cluster.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok = local_cluster.run("processor", "call", "shout", input=b"a\nbc\n")
        assert ok.returncode == 0 and ok.stdout == b"A\nBC\n", ok.stderr
        failed = local_cluster.run("processor", "call", "shout", input=b"x\nboom\n")
        assert failed.returncode == 1 and b"ValueError: no good: boom" in failed.stderr, failed.stderr
        bad = local_cluster.run("processor", "call", "shout", "--input", "1", input=b"x\n")
        assert bad.returncode == 1 and b"has 1 input" in bad.stderr, bad.stderr
    finally:
        runtime.kill()
        runtime.wait()
        local_cluster.invoke("processor", "delete", "shout")
    missing = local_cluster.run("processor", "call", "nobody", input=b"")
    assert missing.returncode == 1 and b"no processor of that name" in missing.stderr, missing.stderr
