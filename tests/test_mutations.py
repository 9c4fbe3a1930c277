"""The DDPM tests catch the bugs they claim to guard: each mutation of ddpm.py below must fail them.

Each case rewrites one expression inside one named function of ``course_lib/ddpm.py`` (found by an ast
walk, so a reformatting or a move elsewhere in the file does not break it; the substitution ignores how
whitespace is laid out), loads the result as a separate module, points the named unit tests at it and
expects each of them to fail. If the function is gone or the text no longer occurs in it exactly once, the
case fails too: update it together with ddpm.py.
"""

import ast
import re
import types
from pathlib import Path

import pytest
import test_ddpm_sampling
import test_ddpm_scheduler

from course_lib import ddpm

SOURCE = Path(ddpm.__file__).read_text()
SCHEDULER_TESTS, SAMPLING_TESTS = test_ddpm_scheduler, test_ddpm_sampling

# (name, function, text in it, its mutation, [(test module, test function, arguments)] that must fail).
# The slow marginal test is listed once, for a variance error made inside the step itself.
POSTERIOR_STEP = (SCHEDULER_TESTS, "test_reverse_step_draws_the_posterior_mean_plus_its_std_times_the_noise",
                  ("posterior",))
POSTERIOR_TABLE = (SCHEDULER_TESTS, "test_reverse_step_uses_the_gaussian_posterior", ("posterior",))
MARGINALS = (SAMPLING_TESTS, "test_ancestral_chain_has_the_forward_marginals_at_every_step", ("posterior", 0.08777))
MUTATIONS = [
    ("variance x2 (table)", "NoiseScheduler.__init__",
     "posterior_variance = betas * (1.0 - alpha_bars_prev)", "posterior_variance = 2 * betas * (1.0 - alpha_bars_prev)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance x2 (in the step)", "NoiseScheduler.sample_prev_image_distribution",
     "return mean + variance.sqrt() * noise", "return mean + (2 * variance).sqrt() * noise",
     [POSTERIOR_STEP, MARGINALS]),
    ("variance x100 (in the step)", "NoiseScheduler.sample_prev_image_distribution",
     "return mean + variance.sqrt() * noise", "return mean + (100 * variance).sqrt() * noise",
     [POSTERIOR_STEP]),
    ("variance shifted one step (index t - 1)", "NoiseScheduler.posterior_mean_variance",
     "variance = self._per_sample(table, t, x_t)", "variance = self._per_sample(table, (t - 1).clamp(min=0), x_t)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance shifted one step (table rolled)", "NoiseScheduler.__init__",
     "self.posterior_variance = posterior_variance.to(**as_f32)",
     "self.posterior_variance = torch.roll(posterior_variance, 1).to(**as_f32)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance set to 1", "NoiseScheduler.posterior_mean_variance",
     'table = self.posterior_variance if self.variance == "posterior" else self.betas',
     "table = torch.ones_like(self.betas)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("cosine beta not clipped", "make_betas",
     ".clamp(max=0.999)", "",
     [(SCHEDULER_TESTS, "test_cosine_betas_are_clipped_at_0_999", ())]),
    ("cosine beta clipped at 0.99", "make_betas",
     ".clamp(max=0.999)", ".clamp(max=0.99)",
     [(SCHEDULER_TESTS, "test_cosine_betas_are_clipped_at_0_999", ())]),
    ("DDIM's last update lands on alpha_bars[0], not 1", "ddim_steps",
     "if i + 1 < num_steps else x.new_tensor(1.0)", "if i + 1 < num_steps else scheduler.alpha_bars[0]",
     [(SAMPLING_TESTS, "test_ddim_driven_by_the_true_noise_lands_on_the_image", ()),
      (SAMPLING_TESTS, "test_one_step_ddim_returns_the_clean_estimate", ())]),
    ("step-0 no-noise mask removed", "NoiseScheduler.posterior_mean_variance",
     "variance = self._per_sample(table, t, x_t) * (t > 0).view_as(beta)", "variance = self._per_sample(table, t, x_t)",
     [(SCHEDULER_TESTS, "test_last_step_adds_no_noise", ("beta",)),
      (SCHEDULER_TESTS, "test_reverse_step_draws_the_posterior_mean_plus_its_std_times_the_noise", ("beta",))]),
]


def function_span(source: str, qualname: str) -> tuple[int, int]:
    """Where the function ``qualname`` (``name`` or ``Class.method``) lies in ``source``: character offsets."""
    *owners, name = qualname.split(".")
    body = ast.parse(source).body
    for owner in owners:
        body = next((n.body for n in body if isinstance(n, ast.ClassDef) and n.name == owner), [])
    node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)
    assert node is not None, f"ddpm.py has no function {qualname}: update the mutation together with ddpm.py"
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:node.lineno - 1])
    return start, start + sum(len(line) for line in lines[node.lineno - 1:node.end_lineno])


def mutate(source: str, function: str, original: str, replacement: str) -> str:
    """``source`` with ``original`` replaced inside ``function`` only; it must occur there exactly once.

    Runs of whitespace in ``original`` match any run of whitespace, so rewrapping a line keeps the target.
    """
    start, end = function_span(source, function)
    pattern = re.compile(r"\s+".join(map(re.escape, original.split())) if original.strip() else re.escape(original))
    found = list(pattern.finditer(source, start, end))
    assert len(found) == 1, f"the mutation target {original!r} occurs {len(found)} times in {function}, not once"
    return source[:found[0].start()] + replacement + source[found[0].end():]


def load(source: str) -> types.ModuleType:
    """``source`` as a fresh module that imports its siblings from course_lib."""
    module = types.ModuleType("course_lib.ddpm_mutant")
    module.__package__ = "course_lib"
    exec(compile(source, "ddpm_mutant.py", "exec"), module.__dict__)
    return module


def mutant(function: str, original: str, replacement: str) -> types.ModuleType:
    """ddpm.py with one substitution inside ``function``."""
    return load(mutate(SOURCE, function, original, replacement))


@pytest.mark.parametrize("name, function, original, replacement, detectors", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_mutation_fails_the_tests_that_guard_it(monkeypatch, name, function, original, replacement, detectors):
    broken = mutant(function, original, replacement)
    for test_module, test_name, args in detectors:
        monkeypatch.setattr(test_module, "ddpm", broken)
        with pytest.raises(AssertionError):
            getattr(test_module, test_name)(*args)
        monkeypatch.undo()


def test_the_unmutated_module_passes_the_same_tests(monkeypatch):
    """The harness itself: the same tests pass on an exact copy of ddpm.py loaded the same way."""
    exact = load(SOURCE)
    detectors = {(module, name, args) for *_, found in MUTATIONS for module, name, args in found}
    for test_module, test_name, args in sorted(detectors, key=lambda d: (d[1], d[2])):
        monkeypatch.setattr(test_module, "ddpm", exact)
        getattr(test_module, test_name)(*args)
        monkeypatch.undo()


def test_the_target_is_found_by_function_whatever_surrounds_it():
    """The harness: a target found only inside its function, and still found once the file is reformatted."""
    source = (
        "def other():\n    return clip(betas, 0.999)\n\n\n"
        "class NoiseScheduler:\n    def step(self):\n        return clip(betas, 0.999)\n"
    )
    mutated = mutate(source, "NoiseScheduler.step", "clip(betas, 0.999)", "clip(betas, 0.99)")
    assert mutated.splitlines()[1] == "    return clip(betas, 0.999)"  # the other function is untouched
    assert mutated.splitlines()[-1] == "        return clip(betas, 0.99)"
    rewrapped = "# a comment added above\n\n" + source.replace("clip(betas, 0.999)", "clip(betas,\n        0.999)")
    assert "clip(betas, 0.99)" in mutate(rewrapped, "NoiseScheduler.step", "clip(betas, 0.999)", "clip(betas, 0.99)")
    with pytest.raises(AssertionError, match="no function"):
        mutate(source, "NoiseScheduler.gone", "clip(betas, 0.999)", "")
    with pytest.raises(AssertionError, match="occurs 0 times"):
        mutate(source, "other", "clip(betas, 0.5)", "")
