"""``multimodal_ip.problem`` is a package of one concept per module, still exporting what the module did."""

from pathlib import Path

import multimodal_ip.problem as problem

BEFORE = ["DataTerm", "Invariance", "JointProblem", "Linearization", "balanced_weights"]  # the module's __all__
ALSO_IMPORTED = ["ALIGN_GROWTH", "align"]  # by the solvers and the MPI problem


def test_every_name_is_still_exported():
    assert set(BEFORE) <= set(problem.__all__)
    for name in [*problem.__all__, *ALSO_IMPORTED]:
        assert getattr(problem, name) is not None, name
    assert problem.JointProblem.__module__ == "multimodal_ip.problem.joint_problem"


def test_no_module_of_the_problem_and_solver_layers_is_over_400_lines():
    import multimodal_ip.solvers as solvers

    here = Path(problem.__file__).parent
    assert {"term.py", "linearization.py", "joint_problem.py", "align.py", "balance.py", "objective.py"} <= \
        {p.name for p in here.glob("*.py")}
    paths = [*here.glob("*.py"), *Path(solvers.__file__).parent.glob("*.py"), here.parent / "distributed.py",
             here.parent / "io/problem_builder.py"]
    sizes = {p.name: len(p.read_text().splitlines()) for p in paths}
    assert {k: n for k, n in sizes.items() if n > 400} == {}
