"""Every shipped example policy fits the data it is written for: on the `factory demo` corpus, `plan` writes both
manifests, the sandbox example's candidate manifests pass the repetition cap, and the wind-tunnel example plans every
token budget and its validation set, with the policy's own numbers (nothing trains here; the flows' own tests train)."""

from pathlib import Path

import pytest
from support.builds import POLICIES

from datafactory.flows.sandbox import set_up as sandbox_setup
from datafactory.flows.windtunnel import set_up as windtunnel_setup
from datafactory.mixtures.planner import plan
from datafactory.mixtures.policy import load_policy
from datafactory.mixtures.sandbox import candidates

pytestmark = pytest.mark.slow
SHIPPED = sorted(path.name for path in POLICIES.glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The corpus `factory demo` builds (3,000 documents, seed 0), through the build-corpus flow."""
    from datafactory.app.demo import write_demo_corpus
    from datafactory.flows.build import build_corpus

    out = tmp_path_factory.mktemp("demo") / "build"
    corpus = write_demo_corpus(out / "input", n_docs=3000, seed=0)
    build_corpus(str(corpus.config), str(out))
    return out


def test_the_examples_are_all_here():
    assert {"default.yaml", "unimax.yaml", "sandbox.yaml", "windtunnel.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_example_plans_on_the_demo_build(demo, name):
    written = plan(demo, load_policy(POLICIES / name))
    assert written["stable"].exists() and written["anneal"].exists()


def test_the_sandbox_example_fits_the_demo_build(demo):
    policy = load_policy(POLICIES / "sandbox.yaml")
    setup = sandbox_setup(demo, policy, {"device": "cpu", "compile": False, "threads": 1, "extra": {}})
    units = candidates(setup.space, policy.sandbox.runs, policy.sandbox.concentration, policy.seed)
    runs = [setup.proxy(f"c{i:03d}", row, 0) for i, row in enumerate(units)]  # raises past max_epochs
    assert len(runs) == policy.sandbox.runs


def test_the_windtunnel_example_fits_the_demo_build(demo):
    policy = load_policy(POLICIES / "windtunnel.yaml")
    setup = windtunnel_setup(demo, policy)
    assert len(setup.branches) == len(policy.windtunnel.token_budgets) and setup.validation.exists()
