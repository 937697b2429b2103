"""What the tests share: builders of valid workspaces, one per stage, and the ways to break them.

| module | builds or breaks |
|---|---|
| `workspace` | the foundation workspace (data, runs, map) every stage builds on; learner notebooks |
| `problem` | stage 01's problem.yaml |
| `training` | stage 03's runs and checkpoints |
| `evaluation` | stage 04's evaluation/ |
| `serving` | stage 05's registry and serving/ |
| `monitoring` | stage 06's monitoring/ |
| `retirement` | stage 07's registry tags, archive/ and model card |
| `lab` | exercise 10's lab/ and self_assessment.json |
| `untrusted` | `failed` (run a check, assert it failed, return its messages), `snapshot`, hostile files |
| `hostile` | the hostile workspaces `tests/hostile/test_hostile.py` grades |
| `sandbox_attacks` | the hostile notebook cells the sandbox must contain |

Tests import them as `from tests.helpers.evaluation import ...`; so does `bench/`
(`python -m bench.check_speed` from the repository's root).
"""
