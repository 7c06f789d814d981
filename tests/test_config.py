import re
from pathlib import Path

import pytest

from agent.settings.config import ConfigError, load_server_settings, load_settings
from agent.settings.web import load_web_settings

FULL = {
    "LIVEKIT_URL": "wss://example.livekit.cloud",
    "LIVEKIT_API_KEY": "lk-key",
    "LIVEKIT_API_SECRET": "lk-secret-value",
    "DEEPGRAM_API_KEY": "dg-secret-value",
    "CEREBRAS_API_KEY": "cb-secret-value",
    "GROQ_API_KEY": "gq-secret-value",
    "CARTESIA_API_KEY": "ct-secret-value",
}


def test_defaults_and_fallback_order():
    s = load_settings(FULL)
    assert s.agent_name == "interpreter"
    assert [p.name for p in s.llms] == ["cerebras", "groq"]
    assert s.llms[0].model == "gpt-oss-120b" and s.llms[0].reasoning_effort == "low"
    assert s.tts.sample_rate == 24000 and s.stt.model == "nova-3"


def test_every_missing_variable_is_named_at_once():
    with pytest.raises(ConfigError) as err:
        load_settings({})
    message = str(err.value)
    for name in (
        "LIVEKIT_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "DEEPGRAM_API_KEY",
        "CEREBRAS_API_KEY",
        "GROQ_API_KEY",
        "CARTESIA_API_KEY",
    ):
        assert name in message
    assert len(err.value.problems) == 6  # the two LLM keys are one problem


def test_malformed_values_are_named_and_secrets_not_echoed():
    env = {
        **FULL,
        "LIVEKIT_URL": "not a url",
        "MAX_IN_FLIGHT": "lots",
        "SOURCE_LANGUAGE": "English!",
        "CEREBRAS_BASE_URL": "ftp://x",
        "CEREBRAS_REASONING_EFFORT": "max",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = str(err.value)
    for name in (
        "LIVEKIT_URL",
        "MAX_IN_FLIGHT",
        "SOURCE_LANGUAGE",
        "CEREBRAS_BASE_URL",
        "CEREBRAS_REASONING_EFFORT",
    ):
        assert name in message
    assert "secret-value" not in message


def test_file_mode_needs_no_livekit_and_one_llm_is_enough():
    env = {k: v for k, v in FULL.items() if not k.startswith("LIVEKIT") and k != "CEREBRAS_API_KEY"}
    s = load_settings(env, require_livekit=False)
    assert s.livekit is None
    assert [p.name for p in s.llms] == ["groq"]


def test_log_level_is_optional_validated_and_spelled_for_the_framework():
    assert load_settings(FULL).log_level is None  # each mode's own default
    assert load_server_settings({}).log_level is None and load_server_settings({}).framework_log_level is None
    assert load_settings({**FULL, "LOG_LEVEL": "ERROR"}).log_level == "ERROR"
    server = load_server_settings({"LOG_LEVEL": "WARNING"})
    assert server.log_level == "WARNING" and server.framework_log_level == "WARN"  # livekit-agents' spelling
    for load in (load_settings, load_server_settings):
        with pytest.raises(ConfigError, match="LOG_LEVEL='loud' is malformed"):
            load({**FULL, "LOG_LEVEL": "loud"})


def test_max_languages_has_a_default_and_bounds():
    assert load_settings(FULL).max_languages == 4
    assert load_settings({**FULL, "MAX_LANGUAGES": "2"}).max_languages == 2
    for bad in ("0", "17", "many"):
        with pytest.raises(ConfigError, match="MAX_LANGUAGES="):
            load_settings({**FULL, "MAX_LANGUAGES": bad})


def test_voice_cloning_is_on_by_default_off_for_a_deployment_and_documented():
    assert load_settings(FULL).voice_cloning is True
    assert load_settings({**FULL, "VOICE_CLONING": "off"}).voice_cloning is False
    with pytest.raises(ConfigError, match="VOICE_CLONING="):
        load_settings({**FULL, "VOICE_CLONING": "maybe"})
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    assert re.search(r"^#? ?VOICE_CLONING=", example, re.M)


LIVEKIT_ONLY = {k: v for k, v in FULL.items() if k.startswith("LIVEKIT_")}
LOOPBACK_WEB = {**LIVEKIT_ONLY, "WEB_HOST": "127.0.0.1"}  # the page on this machine only: no code needed


def test_the_web_server_needs_only_livekit_and_names_every_missing_variable():
    s = load_web_settings({**LIVEKIT_ONLY, "WEB_OPEN": "true"})  # no provider key
    assert (s.host, s.port, s.token_ttl_s, s.access_code) == ("0.0.0.0", 8080, 600, None)
    assert s.browser_url == s.livekit.url == "wss://example.livekit.cloud" and s.room_metadata == ""
    with pytest.raises(ConfigError) as err:
        load_web_settings({"DEEPGRAM_API_KEY": "dg"})
    assert [p.split()[0] for p in err.value.problems] == [
        "LIVEKIT_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "WEB_HOST=0.0.0.0",  # and served beyond this machine with no access code
    ]


def test_web_settings_are_validated_and_secrets_not_echoed():
    env = {
        **LIVEKIT_ONLY,
        "WEB_PORT": "http",
        "WEB_TOKEN_TTL_S": "5",
        "WEB_LIVEKIT_URL": "example.com",
        "WEB_ACCESS_CODE": "open-sesame-value",
        "LIVEKIT_API_SECRET": "lk-secret-value",
    }
    with pytest.raises(ConfigError) as err:
        load_web_settings(env)
    assert [p.split("=")[0] for p in err.value.problems] == ["WEB_LIVEKIT_URL", "WEB_PORT", "WEB_TOKEN_TTL_S"]
    assert "secret-value" not in str(err.value) and "sesame" not in str(err.value)
    s = load_web_settings(
        {**LIVEKIT_ONLY, "WEB_LIVEKIT_URL": "wss://public.example/", "WEB_ACCESS_CODE": " c "}
    )
    assert s.browser_url == "wss://public.example" and s.access_code == "c"


def test_the_page_served_beyond_this_machine_without_an_access_code_does_not_start_unless_meant():
    """Bound to all interfaces (the default) with no WEB_ACCESS_CODE, anyone who finds the page gets tokens:
    refused, naming the settings that fix it; on this machine only, with a code, or WEB_OPEN=true: allowed."""
    for host in ("0.0.0.0", "::", "10.0.0.5", "interpreter.example"):
        with pytest.raises(ConfigError) as err:
            load_web_settings({**LIVEKIT_ONLY, "WEB_HOST": host})
        (problem,) = err.value.problems
        assert problem.startswith(f"WEB_HOST={host} ")
        assert all(name in problem for name in ("WEB_ACCESS_CODE", "WEB_OPEN=true", "WEB_HOST=127.0.0.1"))
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert load_web_settings({**LIVEKIT_ONLY, "WEB_HOST": host}).host == host
    assert load_web_settings({**LIVEKIT_ONLY, "WEB_ACCESS_CODE": "c"}).host == "0.0.0.0"
    assert load_web_settings({**LIVEKIT_ONLY, "WEB_OPEN": "true"}).open_to_all
    with pytest.raises(ConfigError) as err:
        load_web_settings({**LIVEKIT_ONLY, "WEB_OPEN": "yes please"})
    assert err.value.problems[0].startswith("WEB_OPEN")


def test_web_room_metadata_is_checked_by_the_room_settings_rules():
    good = '{"target_languages": ["es", "fr"], "formality": "formal"}'
    assert load_web_settings({**LOOPBACK_WEB, "WEB_ROOM_METADATA": good}).room_metadata == good
    for bad, why in (
        ("{not json", "not valid JSON"),
        ('{"target_languages": ["tlh"]}', "'tlh' is not a supported language"),
        ('{"colour": "blue"}', "unknown key(s) 'colour'"),
    ):
        with pytest.raises(ConfigError) as err:
            load_web_settings({**LOOPBACK_WEB, "WEB_ROOM_METADATA": bad})
        assert len(err.value.problems) == 1 and err.value.problems[0].startswith(
            "WEB_ROOM_METADATA is malformed"
        )
        assert why in err.value.problems[0] and "job metadata" not in err.value.problems[0]


def test_env_example_documents_every_web_and_local_variable():
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    source = "".join(
        (Path(__file__).parent.parent / "agent" / name).read_text()
        for name in ("settings/config.py", "settings/web.py", "run/local.py")
    )
    names = set(re.findall(r'"((?:WEB|LOCAL)_[A-Z_]+)"', source))
    assert {
        "WEB_PORT",
        "WEB_HOST",
        "WEB_ACCESS_CODE",
        "WEB_TOKEN_TTL_S",
        "WEB_LIVEKIT_URL",
        "WEB_ROOM_METADATA",
    } <= names
    assert "LOCAL_LIVEKIT_PORT" in names
    for name in names:
        assert re.search(rf"^#? ?{name}=", example, re.M), name


def test_flux_models_and_their_end_of_turn_settings():
    env = {**FULL, "DEEPGRAM_BASE_URL": "https://dg.example/v1/listen", "SOURCE_LANGUAGE": "en"}
    flux = load_settings({**env, "DEEPGRAM_MODEL": "flux-general-en", "DEEPGRAM_EAGER_EOT_THRESHOLD": "0.5"})
    assert flux.stt.turn_based and flux.stt.url == "https://dg.example/v2/listen"
    assert flux.stt.flux.eager_eot_threshold == 0.5 and flux.stt.flux.eot_threshold is None
    with pytest.raises(ConfigError) as problems:
        load_settings(
            {
                **env,
                "DEEPGRAM_MODEL": "flux-general-en",
                "SOURCE_LANGUAGE": "de",
                "DEEPGRAM_EAGER_EOT_THRESHOLD": "0.8",
            }
        )
    text = str(problems.value)
    assert "does not transcribe SOURCE_LANGUAGE='de'" in text and "DEEPGRAM_EAGER_EOT_THRESHOLD=0.8" in text
    with pytest.raises(ConfigError, match="are Flux's"):
        load_settings({**env, "DEEPGRAM_EOT_THRESHOLD": "0.8"})  # nova-3
    auto = load_settings({**env, "SOURCE_LANGUAGE": "auto", "DEEPGRAM_MODEL": "flux-general-multi"})
    assert auto.stt.turn_based
