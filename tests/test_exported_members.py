"""The public API is appsdk.__all__: pinned here, so a change to it is a decision."""

from __future__ import annotations

import appsdk

PUBLIC = [
    "AppSDKError",
    "AsyncLLMDClient",
    "CaptureMode",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Feedback",
    "FeedbackClient",
    "LLMDClient",
    "LLMDError",
    "LLMDOptions",
    "ModelPrice",
    "Observation",
    "Pipeline",
    "Policy",
    "PriceTable",
    "RetryPolicy",
    "Sampling",
    "SamplingRule",
    "Settings",
    "StoreError",
    "__version__",
    "configure",
    "flush",
    "get_current_observation_id",
    "get_current_trace_id",
    "get_prompt",
    "issue_feedback_token",
    "observe",
    "shutdown",
    "start_observation",
    "stats",
    "submit_feedback",
    "trace_attributes",
    "update_current_observation",
    "use_prompt",
    "verify_feedback_token",
    "wrap_context",
]


def test_the_public_api_is_pinned_and_sorted() -> None:
    assert appsdk.__all__ == PUBLIC
    assert sorted(appsdk.__all__) == appsdk.__all__
    for name in appsdk.__all__:
        assert getattr(appsdk, name) is not None, name


def test_importing_appsdk_does_not_import_langfuse() -> None:
    import subprocess
    import sys

    code = "import sys, appsdk; print('langfuse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_submodule_shadows_a_public_name() -> None:
    """``@appsdk.observe`` stays the decorator after every submodule has been imported."""
    import importlib
    import pkgutil
    import types

    for module in pkgutil.walk_packages(appsdk.__path__, "appsdk."):
        if not module.name.startswith(("appsdk.sim", "appsdk.integrations")):
            importlib.import_module(module.name)
    for name in appsdk.__all__:
        assert not isinstance(getattr(appsdk, name), types.ModuleType), name
