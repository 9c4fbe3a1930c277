"""Print why a browser test was skipped: a skip must never pass for a run that checked the sliders or the site."""


def pytest_terminal_summary(terminalreporter):
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if "tests/browser/" in report.nodeid.replace("\\", "/")]
    if skipped:
        longrepr = skipped[0].longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        terminalreporter.write_line(f"BROWSER TEST SKIPPED ({len(skipped)} test(s)): {reason}", yellow=True)
