"""Fixtures shared by the test modules: free ports, the hang watchdog, and the server tests' engine
and module server (helpers that are not fixtures live in serverkit.py); the slow/network marks of the
test files that do not write their own (``MARKS``)."""

from __future__ import annotations

import faulthandler

import pytest

# `make test-fast` runs `pytest -m "not slow and not network"`; `make test` (and CI) runs everything.
# "slow": more than ~5 s on this 2-core machine (pytest --durations, with the whole suite beside it):
# a real server or broker process, openjd, training, a long clip. "network": needs the package
# registries (PyPI). Most server and client test files mark their own tests; this table marks those of
# the other files, by module. A name is a test function (all its parameters) or one parametrized case
# ("name[id]"); "*" is every test of the module.
MARKS: dict[str, dict[str, tuple[str, ...]]] = {
    "test_blender_addon": {"*": ("slow", "network")},  # real bpy venv; the extension bundles pyzmq wheels from PyPI
    "test_farm": {name: ("slow",) for name in (
        "test_openjd_run_killed_then_resumed_equals_uninterrupted",
        "test_openjd_run_splits_spans_into_pass_and_blend_tasks",
        "test_openjd_retried_pass_tasks_recover_from_any_corruption_of_their_pass_files",
        "test_openjd_run_with_session_server", "test_openjd_task_failing_mid_shot_exits_3_naming_the_frame",
        "test_sigterm_exits_130_without_partial_frames")},
    "test_passes": {name: ("slow",) for name in (
        "test_forward_backward_and_blend_tasks_equal_the_embedded_run", "test_a_killed_pass_resumes_exactly",
        "test_a_killed_embedded_run_leaves_its_passes_only_until_the_next_run",
        "test_two_blends_of_one_span_at_once_both_write_it_whole")},
    "test_train_weights": {name: ("slow",) for name in (
        "test_training_paused_mid_stage_reproduces_an_uninterrupted_run",
        "test_smoke_training_writes_a_loadable_manifest",
        "test_bf16_runs_the_networks_in_bfloat16_and_stays_close_to_fp32")},
    "test_bench": {name: ("slow",) for name in (
        "test_tiny_bench_beside_a_busy_neighbour_reports_both", "test_tiny_bench_writes_json_with_every_stage")},
    "test_broker": {name: ("slow",) for name in (
        "test_worker_killed_mid_paths_job_is_retried_elsewhere", "test_client_key_cannot_register_as_a_worker",
        "test_workers_reconnect_after_a_broker_restart", "test_worker_killed_mid_inband_job",
        "test_worker_refuses_a_remote_broker_without_keys_with_exit_2", "test_refused_opens_leave_every_slot_free")},
    "test_example": {"test_colorprop_example_colours_the_bundled_shot": ("slow",)},
    "test_exr_fuzz": {"test_colorize_with_non_utf8_header_strings_in_plates_and_keys_exits_0_or_3_never_a_traceback":
                      ("slow",)},
    "test_curve_keys": {"test_a_curve_server_serves_both_layouts": ("slow",)},
    "test_key_formats": {name: ("slow",) for name in (
        "test_ocio_config_from_the_environment_is_used",
        "test_plates_without_a_colour_space_are_the_studio_configs_linear_rec709",
        "test_a_missing_ocio_config_is_an_error_not_a_silent_fallback")},
    "test_step_layout": {
        "test_packed_candidates_through_propagate_step_reproduce_propagator_step_on_a_real_clip": ("slow",)},
    "test_pipeline": {"test_skip_existing_resumes_full_method_without_recomputing": ("slow",)},
    "test_cli": {"test_colorprop_example_writes_frames_and_a_contact_sheet": ("slow",)},
    "test_layering": {"test_what_is_loaded_at_run_time[core-cli]": ("slow",)},
    "test_threads": {"test_cli_takes_the_environment_then_the_usable_cpus": ("slow",)},
}


def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        table = MARKS.get(item.path.stem, {})
        modules[item.path.stem] = item.module
        for key in ("*", getattr(item, "originalname", item.name), item.name):
            for mark in table.get(key, ()):
                item.add_marker(mark)
    # A renamed test would silently lose its mark (and slow down `make test-fast`): every name must exist.
    stale = [f"{stem}::{name}" for stem, module in modules.items() for name in MARKS.get(stem, {})
             if name != "*" and not hasattr(module, name.split("[")[0])]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py MARKS names tests that do not exist: {', '.join(stale)}")


@pytest.fixture(scope="session")
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on (call it once per port)."""
    from colorprop_server.security import free_loopback_port

    return free_loopback_port


@pytest.fixture
def watchdog(request, tmp_path_factory):
    """No test using this may hang the suite: after 300 s every thread's stack is dumped to
    ``<this run's basetemp>/watchdog-<test>.txt`` and the run exits (to a file of this run, since
    pytest captures the terminal and concurrent runs must not overwrite each other's dumps)."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:80]
    path = tmp_path_factory.getbasetemp() / f"watchdog-{name}.txt"
    with open(path, "w") as log:
        faulthandler.dump_traceback_later(300, exit=True, file=log)
        yield path
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """An engine without weights (method flow only), whatever weights the checkout ships."""
    from colorprop.engine.engine import Engine

    return Engine.load(tmp_path_factory.mktemp("no-weights"))


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """One in-process server for the module, with an allowed root and small limits so oversize is
    cheap to provoke. Its clients all come from 127.0.0.1, one identity without CURVE keys: the
    per-client budgets are lifted so eight of them can share it as eight artists would."""
    from serverkit import ThreadServer

    root = tmp_path_factory.mktemp("allowed")
    srv = ThreadServer(engine, allowed_roots=(str(root),), max_message_bytes=4 << 20, session_timeout_s=2.0,
                       max_jobs=8, max_jobs_per_client=8, max_client_buffered_frames=64)
    srv.root = root
    yield srv
    srv.stop()
