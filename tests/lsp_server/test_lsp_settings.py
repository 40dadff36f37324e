"""Settings parsing: defaults, camelCase keys, the "diffill" wrapper, and invalid values replaced one by one."""

from __future__ import annotations

from lsp_server.settings import Settings, merge, parse_settings


def test_no_settings_are_the_defaults():
    assert parse_settings(None) == (Settings(), [])
    assert parse_settings({}) == (Settings(), [])


def test_camel_case_keys_and_the_section_wrapper_are_read():
    raw = {"diffill": {"completion": {"debounceMs": 10, "maxLines": 3}, "model": {"path": "/m", "device": "cuda:1"}}}
    settings, problems = parse_settings(raw)
    assert problems == []
    assert (settings.completion.debounce_ms, settings.completion.max_lines) == (10, 3)
    assert (settings.model.path, settings.model.device) == ("/m", "cuda:1")


def test_each_invalid_value_falls_back_to_its_default_and_is_reported():
    raw = {"completion": {"steps": 0, "threshold": True, "temperature": 0.5, "candidates": 2.5}, "limits": 7}
    settings, problems = parse_settings(raw)
    assert settings.completion.steps == Settings().completion.steps
    assert settings.completion.threshold == Settings().completion.threshold
    assert settings.completion.temperature == 0.5  # the valid neighbour is kept
    assert settings.completion.candidates is None
    assert len(problems) == 4
    assert all(problem.startswith("diffill.") for problem in problems)


def test_a_non_object_is_reported_and_gives_defaults():
    assert parse_settings("fast") == (Settings(), ["diffill: expected an object, got 'fast'; using defaults"])


def test_languages_default_to_enabled_and_star_sets_the_default():
    settings, _ = parse_settings({"languages": {"enabled": {"Markdown": False}}})
    assert settings.languages.allows("python") and not settings.languages.allows("markdown")
    settings, _ = parse_settings({"languages": {"enabled": {"*": False, "python": True}}})
    assert settings.languages.allows("python") and not settings.languages.allows("go")


def test_the_remote_token_stays_out_of_the_repr():
    settings, _ = parse_settings({"remote": {"url": "http://gpu:8080", "token": "s3cret"}})
    assert settings.remote.token == "s3cret"
    assert "s3cret" not in repr(settings)


def test_engine_key_changes_only_with_engine_settings():
    base, _ = parse_settings({"model": {"path": "/a"}})
    sampling, _ = parse_settings({"model": {"path": "/a"}, "completion": {"steps": 4}})
    other, _ = parse_settings({"model": {"path": "/b"}})
    assert base.engine_key() == sampling.engine_key() != other.engine_key()


def test_merge_is_deep_and_later_values_win():
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert merge({"a": 1}, None) == {"a": 1}


def test_empty_arrays_are_read_as_empty_objects_as_neovim_sends_them():
    # Neovim encodes `model = { path = nil }` and `enabled = {}` as [], whole sections included.
    raw = {"model": [], "remote": [], "languages": {"enabled": []}, "completion": {"steps": 4}}
    settings, problems = parse_settings(raw)
    assert problems == []
    assert settings.completion.steps == 4 and settings.model == Settings().model
    assert parse_settings([]) == (Settings(), [])
    assert parse_settings({"diffill": []}) == (Settings(), [])
    # An empty `settings` table pulled from the client does not wipe out the init options.
    assert merge({"completion": {"steps": 4}}, []) == {"completion": {"steps": 4}}
    assert merge({"model": []}, {"model": {"path": "/m"}}) == {"model": {"path": "/m"}}
    assert parse_settings({"model": [1]})[1] == ["diffill.model: expected an object, got [1]; using defaults"]


def test_the_model_preset_is_fast_or_reference_and_selects_another_engine():
    settings, problems = parse_settings({"model": {"preset": "reference"}})
    assert settings.model.preset == "reference" and problems == []
    assert settings.engine_key() != Settings().engine_key()  # a preset change reloads the engine
    settings, problems = parse_settings({"model": {"preset": "exact"}})
    assert settings.model.preset == "fast" and problems == ["diffill.model.preset: expected one of fast, reference, "
                                                            "got 'exact'; using the default"]  # fmt: skip


def test_the_model_dtype_is_auto_float32_or_bfloat16_and_selects_another_engine():
    settings, problems = parse_settings({"model": {"dtype": "bfloat16"}})
    assert settings.model.dtype == "bfloat16" and problems == []
    assert settings.engine_key() != Settings().engine_key()  # a dtype change reloads the engine
    settings, problems = parse_settings({"model": {"dtype": "int8"}})
    assert settings.model.dtype == "auto" and problems and "diffill.model.dtype" in problems[0]


def test_repairs_reach_the_fim_settings_and_bad_counts_are_reported():
    from lsp_server.engines import fim_settings

    settings, problems = parse_settings({"completion": {"repairs": 0}})
    assert problems == [] and fim_settings(settings, {}).repairs == 0
    assert fim_settings(Settings(), {}).repairs == Settings().completion.repairs == 2
    settings, problems = parse_settings({"completion": {"repairs": 9}})
    assert settings.completion.repairs == 2 and len(problems) == 1


def test_the_quick_first_ask_reaches_the_fim_settings_of_a_diffusion_model_only():
    from lsp_server.engines import fim_settings

    diffusion, ar = {"kind": "diffusion"}, {"kind": "autoregressive"}
    assert fim_settings(Settings(), diffusion).first_steps == Settings().completion.first_steps == 4
    settings, problems = parse_settings({"completion": {"firstSteps": 3}})
    assert problems == [] and fim_settings(settings, diffusion).first_steps == 3
    assert fim_settings(settings, ar).first_steps == 0  # steps mean nothing to an AR model: one ask
    assert fim_settings(settings, {}).first_steps == 0  # a model that did not describe itself: one ask
    settings, problems = parse_settings({"completion": {"firstSteps": -1}})
    assert settings.completion.first_steps == 4 and len(problems) == 1
