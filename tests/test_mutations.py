"""The DDPM tests catch the bugs they claim to guard: each mutation of ddpm.py below must fail them.

Each case rewrites one line of ``course_lib/ddpm.py`` (a plain text substitution), loads the result
as a separate module, points the named unit tests at it and expects each of them to fail. If a
substitution no longer matches the source, the case fails too: update it together with ddpm.py.
"""

import types
from pathlib import Path

import pytest
import test_ddpm_sampling
import test_ddpm_scheduler

from course_lib import ddpm

SOURCE = Path(ddpm.__file__).read_text()
SCHEDULER_TESTS, SAMPLING_TESTS = test_ddpm_scheduler, test_ddpm_sampling

# (name, text in ddpm.py, its mutation, [(test module, test function, arguments)] that must fail).
# The slow marginal test is listed once, for a variance error made inside the step itself.
POSTERIOR_STEP = (SCHEDULER_TESTS, "test_reverse_step_draws_the_posterior_mean_plus_its_std_times_the_noise",
                  ("posterior",))
POSTERIOR_TABLE = (SCHEDULER_TESTS, "test_reverse_step_uses_the_gaussian_posterior", ("posterior",))
MARGINALS = (SAMPLING_TESTS, "test_ancestral_chain_has_the_forward_marginals_at_every_step", ("posterior", 0.08777))
MUTATIONS = [
    ("variance x2 (table)",
     "posterior_variance = betas * (1.0 - alpha_bars_prev)", "posterior_variance = 2 * betas * (1.0 - alpha_bars_prev)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance x2 (in the step)",
     "return mean + variance.sqrt() * noise", "return mean + (2 * variance).sqrt() * noise",
     [POSTERIOR_STEP, MARGINALS]),
    ("variance x100 (in the step)",
     "return mean + variance.sqrt() * noise", "return mean + (100 * variance).sqrt() * noise",
     [POSTERIOR_STEP]),
    ("variance shifted one step (index t - 1)",
     "variance = self._per_sample(table, t, x_t)", "variance = self._per_sample(table, (t - 1).clamp(min=0), x_t)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance shifted one step (table rolled)",
     "self.posterior_variance = posterior_variance.to(**as_f32)",
     "self.posterior_variance = torch.roll(posterior_variance, 1).to(**as_f32)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("variance set to 1",
     'table = self.posterior_variance if self.variance == "posterior" else self.betas',
     "table = torch.ones_like(self.betas)",
     [POSTERIOR_TABLE, POSTERIOR_STEP]),
    ("cosine beta not clipped",
     ".clamp(max=0.999)", "",
     [(SCHEDULER_TESTS, "test_cosine_betas_are_clipped_at_0_999", ())]),
    ("cosine beta clipped at 0.99",
     ".clamp(max=0.999)", ".clamp(max=0.99)",
     [(SCHEDULER_TESTS, "test_cosine_betas_are_clipped_at_0_999", ())]),
    ("DDIM's last update lands on alpha_bars[0], not 1",
     "if i + 1 < num_steps else x.new_tensor(1.0)", "if i + 1 < num_steps else scheduler.alpha_bars[0]",
     [(SAMPLING_TESTS, "test_ddim_driven_by_the_true_noise_lands_on_the_image", ()),
      (SAMPLING_TESTS, "test_one_step_ddim_returns_the_clean_estimate", ())]),
    ("step-0 no-noise mask removed",
     "variance = self._per_sample(table, t, x_t) * (t > 0).view_as(beta)", "variance = self._per_sample(table, t, x_t)",
     [(SCHEDULER_TESTS, "test_last_step_adds_no_noise", ("beta",)),
      (SCHEDULER_TESTS, "test_reverse_step_draws_the_posterior_mean_plus_its_std_times_the_noise", ("beta",))]),
]


def mutant(original: str, replacement: str) -> types.ModuleType:
    """ddpm.py with one substitution, as a fresh module that imports its siblings from course_lib."""
    assert SOURCE.count(original) == 1, f"the mutation target {original!r} is no longer in ddpm.py once"
    module = types.ModuleType("course_lib.ddpm_mutant")
    module.__package__ = "course_lib"
    exec(compile(SOURCE.replace(original, replacement), "ddpm_mutant.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("name, original, replacement, detectors", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_mutation_fails_the_tests_that_guard_it(monkeypatch, name, original, replacement, detectors):
    broken = mutant(original, replacement)
    for test_module, test_name, args in detectors:
        monkeypatch.setattr(test_module, "ddpm", broken)
        with pytest.raises(AssertionError):
            getattr(test_module, test_name)(*args)
        monkeypatch.undo()


def test_the_unmutated_module_passes_the_same_tests(monkeypatch):
    """The harness itself: the same tests pass on an exact copy of ddpm.py loaded the same way."""
    exact = mutant('PREDICTIONS = ("eps", "v")', 'PREDICTIONS = ("eps", "v")')
    detectors = {(module, name, args) for *_, found in MUTATIONS for module, name, args in found}
    for test_module, test_name, args in sorted(detectors, key=lambda d: (d[1], d[2])):
        monkeypatch.setattr(test_module, "ddpm", exact)
        getattr(test_module, test_name)(*args)
        monkeypatch.undo()
