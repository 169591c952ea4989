"""Fixtures shared by the test modules: free ports, the hang watchdog, and the server tests' engine
and module server (helpers that are not fixtures live in serverkit.py); the slow/network marks of the
test files that do not write their own (``MARKS``)."""

from __future__ import annotations

import faulthandler

import pytest

# `make test-fast` runs `pytest -m "not slow and not network"` (the inner loop, <= 90 s on a quiet 2-core
# machine); `make test` (and CI) runs everything. "slow": more than ~2 s (pytest --durations, measured with the
# whole suite running on this shared 2-core machine): a server, broker or CLI process, openjd, training, a long
# clip, or a wait that is the behaviour (a dead server given up in 5 s); a module whose shared fixture is that
# costly is slow as a whole. "network": needs the package registries (PyPI). The server and client test files
# mark their own tests; this table marks those of the other files, by module. A name is a test function (all
# its parameters) or one parametrized case ("name[id]"); "*" is every test of the module.
_SLOW = ("slow",)
MARKS: dict[str, dict[str, tuple[str, ...]]] = {
    "test_blender_addon": {"*": ("slow", "network")},  # real bpy venv; the extension bundles pyzmq wheels from PyPI
    "test_live_blender": {"*": ("slow", "network")},  # the same bpy venv and extension
    "test_live_nuke": {"*": _SLOW},  # a server process per module, live sessions of whole shots
    "test_live_server": {"test_the_live_benchmark_runs_end_to_end_and_its_table_renders": _SLOW},
    "test_broker": {"*": _SLOW},  # a broker and worker processes per module
    "test_train_weights": {"*": _SLOW},  # a module fixture trains
    "test_passes": {"*": _SLOW},  # module fixtures colour whole shots per method
    "test_farm": {
        name: _SLOW
        for name in (
            "test_openjd_check",
            "test_openjd_run_killed_then_resumed_equals_uninterrupted",
            "test_openjd_run_splits_spans_into_pass_and_blend_tasks",
            "test_openjd_retried_pass_tasks_recover_from_any_corruption_of_their_pass_files",
            "test_openjd_run_with_session_server",
            "test_openjd_task_failing_mid_shot_exits_3_naming_the_frame",
            "test_sigterm_exits_130_without_partial_frames",
            "test_openjd_run_with_a_partial_key_equals_the_embedded_run",
            "test_openjd_regrade_of_a_colour_plate_by_a_partial_key_only",
        )
    },
    "test_bench": {
        name: _SLOW
        for name in (
            "test_tiny_bench_beside_a_busy_neighbour_reports_both",
            "test_tiny_bench_writes_json_with_every_stage",
        )
    },
    "test_example": {"test_colorprop_example_colours_the_bundled_shot": _SLOW},
    "test_exr_fuzz": {
        "test_colorize_with_non_utf8_header_strings_in_plates_and_keys_exits_0_or_3_never_a_traceback": _SLOW
    },
    "test_curve_keys": {"test_a_curve_server_serves_both_layouts": _SLOW},
    "test_key_formats": {
        name: _SLOW
        for name in (
            "test_ocio_config_from_the_environment_is_used",
            "test_plates_without_a_colour_space_are_the_studio_configs_linear_rec709",
            "test_a_missing_ocio_config_is_an_error_not_a_silent_fallback",
        )
    },
    "test_step_layout": {
        "test_packed_candidates_through_propagate_step_reproduce_propagator_step_on_a_real_clip": _SLOW
    },
    "test_pipeline": {
        name: _SLOW
        for name in (
            "test_skip_existing_resumes_full_method_without_recomputing",
            "test_console_script_exit_code_on_failure",
        )
    },
    "test_cli": {
        name: _SLOW
        for name in (
            "test_colorprop_example_writes_frames_and_a_contact_sheet",
            "test_suggest_keys_from_a_confidence_output_ranks_its_frames_without_the_plates",
        )
    },
    "test_layering": {"test_what_is_loaded_at_run_time[core-cli]": _SLOW},
    "test_threads": {
        name: _SLOW
        for name in (
            "test_cli_takes_the_environment_then_the_usable_cpus",
            "test_cli_gives_every_library_the_decided_count_and_quiet_openmp",
            "test_serve_takes_threads_from_its_config_file_and_the_command_line_wins",
            "test_the_policy_keeps_a_frames_memory_for_the_next_and_a_studios_malloc_settings_win",
        )
    },
    "test_color": {"test_torch_lab_float32_batch_round_trip": _SLOW},
    "test_keys": {"test_two_keys_beat_one_when_an_object_enters": _SLOW},
    "test_matching": {
        name: _SLOW for name in ("test_lite0_matching_recovers_a_known_shift", "test_memory_is_bounded_by_the_chunk")
    },
    "test_nets": {"test_global_branch_copies_colour_under_a_shift": _SLOW},
    "test_protocol": {"test_decode_of_random_frames_only_ever_raises_protocol_error": _SLOW},
    "test_regrade": {"test_regrade_carries_the_change_and_keeps_the_plate_elsewhere[full]": _SLOW},
    "test_settings": {
        name: _SLOW
        for name in (
            "test_a_metrics_port_in_use_exits_2_naming_the_option[serve]",
            "test_a_named_weights_folder_that_holds_no_weights_exits_5",
            "test_an_address_in_use_exits_2_naming_the_option[server]",
            "test_an_out_of_range_config_value_exits_2_naming_the_key[max-jobs-0]",
            "test_an_out_of_range_config_value_exits_2_naming_the_key[metrics-port]",
            "test_an_out_of_range_flag_exits_2_naming_the_option_and_the_value[device]",
            "test_an_out_of_range_flag_exits_2_naming_the_option_and_the_value[session-timeout]",
            "test_default_weights_missing_is_a_warning_before_listening",
            "test_missing_curve_key_files_are_named",
        )
    },
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
    stale = [
        f"{stem}::{name}"
        for stem, module in modules.items()
        for name in MARKS.get(stem, {})
        if name != "*" and not hasattr(module, name.split("[")[0])
    ]
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
    srv = ThreadServer(
        engine,
        allowed_roots=(str(root),),
        max_message_bytes=4 << 20,
        session_timeout_s=2.0,
        max_jobs=8,
        max_jobs_per_client=8,
        max_client_buffered_frames=64,
    )
    srv.root = root
    yield srv
    srv.stop()
