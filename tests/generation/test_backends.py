"""The backend contract: resolving backends, seeds, and the diffusers backend with the offline tiny model."""

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from drawbench.backends.base import SampleBackend, SampleRequest, backend_for, sample_seed, sample_seed_for
from drawbench.backends.diffusers_backend import DiffusersBackend, tiny_model_config, tiny_pipeline
from drawbench.backends.imported import ImportBackend
from tests.factories import EvaluatedModelFactory, PromptFactory


def requests_for(text: str, seeds, position: int = 1) -> list[SampleRequest]:
    return [
        SampleRequest(prompt_id=position, prompt_text=text, prompt_position=position, index=i, seed=s)
        for i, s in enumerate(seeds)
    ]


def pixels(images) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in images]


# --- resolving backends ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backend_for_builds_the_models_backend_from_its_config():
    model = EvaluatedModelFactory(
        backend="drawbench.backends.diffusers_backend.DiffusersBackend", config=tiny_model_config(init_seed=3)
    )

    backend = backend_for(model)

    assert isinstance(backend, DiffusersBackend) and backend.config["init_seed"] == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, message",
    [
        ("drawbench.backends.nowhere.Backend", "cannot be imported"),
        ("tests.generation.fake_backends.NotABackend", "is not a subclass of drawbench.backends.base.SampleBackend"),
        ("tests.generation.fake_backends.seed_image", "is not a subclass"),
    ],
)
def test_backend_for_explains_a_bad_dotted_path(path, message):
    model = EvaluatedModelFactory(name="broken", backend=path)

    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        backend_for(model)

    assert "broken@1" in str(caught.value) and path in str(caught.value)


def test_the_base_backend_asks_subclasses_for_generate():
    with pytest.raises(NotImplementedError, match="must provide a generate"):
        SampleBackend({}).generate([])


def test_import_backend_generates_nothing():
    assert ImportBackend.generates is False and DiffusersBackend.generates is True


@pytest.mark.parametrize(
    "config, message",
    [
        ({}, "exactly one of 'model'"),
        ({"tiny": True, "model": "org/name"}, "exactly one of 'model'"),
        ({"tiny": True, "steps": 3}, "unknown config key"),
        ({"tiny": True, "num_inference_steps": "ten"}, "has the wrong type"),
        ({"tiny": True, "num_inference_steps": True}, "has the wrong type"),
        ({"tiny": True, "dtype": "float8"}, "is not one of"),
        ({"tiny": True, "batch_size": 0}, "at least 1"),
        ({"model": "/no/such/folder"}, "does not exist"),
    ],
)
def test_diffusers_backend_rejects_a_bad_config_before_loading_anything(config, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        DiffusersBackend(config)


# --- seeds ----------------------------------------------------------------------------------------------------


def test_sample_seed_is_a_pure_function_of_model_prompt_and_index():
    seed = sample_seed("tiny-a@1", "A red cube.", 3)

    assert seed == sample_seed("tiny-a@1", "A red cube.", 3)
    assert 0 <= seed < 2**63
    others = {
        sample_seed("tiny-a@2", "A red cube.", 3),
        sample_seed("tiny-a@1", "A red cube!", 3),
        sample_seed("tiny-a@1", "A red cube.", 4),
    }
    assert seed not in others and len(others) == 3


def test_sample_seed_is_pinned_so_stored_seeds_stay_reproducible():
    # sha256 of the key material, not Python's salted hash(): a change here would break every stored sample's seed.
    assert sample_seed("tiny-a@1", "A red cube.", 0) == 47031292415196917


@pytest.mark.django_db
def test_sample_seed_for_does_not_depend_on_database_ids():
    model = EvaluatedModelFactory(name="tiny-a", version="1")
    prompt = PromptFactory(text="A red cube.")

    assert sample_seed_for(model, prompt, 2) == sample_seed("tiny-a@1", "A red cube.", 2)


# --- the tiny diffusers model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_backend():
    backend = DiffusersBackend(tiny_model_config(init_seed=7, num_inference_steps=4))
    backend.prepare()
    return backend


def test_tiny_backend_gives_the_same_pixels_for_the_same_seed(tiny_backend):
    first = pixels(tiny_backend.generate(requests_for("A red cube.", [11, 12])))
    second = pixels(tiny_backend.generate(requests_for("A red cube.", [11, 12])))

    assert first[0].shape == (64, 64, 3)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_tiny_backend_gives_different_pixels_for_different_seeds(tiny_backend):
    one, other = pixels(tiny_backend.generate(requests_for("A red cube.", [11, 99])))

    assert not np.array_equal(one, other)
    assert one.std() > 5, "an image with no contrast: the output is grey mush"


def test_tiny_backend_image_does_not_depend_on_the_rest_of_the_batch(tiny_backend):
    alone = pixels(tiny_backend.generate(requests_for("A red cube.", [11])))[0].astype(int)
    batched = pixels(tiny_backend.generate(requests_for("Two dogs.", [5]) + requests_for("A red cube.", [11])))[1]
    other_seed = pixels(tiny_backend.generate(requests_for("A red cube.", [12])))[0].astype(int)

    # The same noise, so the same image: CPU kernels chosen by batch size may round a float differently, which can
    # move a pixel value by one (seen on one machine: 1 value in 12,288), never more. Another seed is another image.
    off = np.abs(alone - batched.astype(int))
    assert off.max() <= 1 and (off > 0).mean() < 1e-3
    assert np.abs(alone - other_seed).mean() > 10


def test_tiny_backend_leaves_the_global_rng_alone(tiny_backend):
    import torch

    state = torch.random.get_rng_state()
    DiffusersBackend(tiny_model_config(init_seed=8)).prepare()
    tiny_backend.generate(requests_for("A red cube.", [1]))

    assert torch.equal(state, torch.random.get_rng_state())


def test_tiny_models_with_different_init_seeds_differ():
    a, b = tiny_pipeline(init_seed=1), tiny_pipeline(init_seed=2)
    a_again = tiny_pipeline(init_seed=1)

    weight = "conv_in.weight"
    assert a.unet.state_dict()[weight].equal(a_again.unet.state_dict()[weight])
    assert not a.unet.state_dict()[weight].equal(b.unet.state_dict()[weight])


def test_tiny_backend_records_its_generation_settings(tiny_backend):
    (image,) = tiny_backend.generate(requests_for("A red cube.", [42]))

    settings = image.settings
    assert settings["seed"] == 42
    assert settings["scheduler"] == "DDIMScheduler" and settings["pipeline"] == "StableDiffusionPipeline"
    assert (settings["num_inference_steps"], settings["guidance_scale"]) == (4, 5.0)
    assert (settings["height"], settings["width"], settings["device"]) == (64, 64, "cpu")
    assert settings["model"] == "tiny" and settings["init_seed"] == 7
    assert set(settings["libraries"]) == {"diffusers", "torch", "transformers"} and all(settings["libraries"].values())


def test_tiny_backend_can_swap_the_scheduler():
    backend = DiffusersBackend(tiny_model_config(scheduler="PNDMScheduler", num_inference_steps=10))

    (image,) = backend.generate(requests_for("A red cube.", [1]))

    assert image.settings["scheduler"] == "PNDMScheduler"


def test_diffusers_backend_loads_a_saved_pipeline_from_a_local_folder_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_pipeline(init_seed=5).save_pretrained(tmp_path / "tiny-sd")
    options = {"num_inference_steps": 3, "guidance_scale": 5.0, "height": 64, "width": 64, "device": "cpu"}
    from_folder = DiffusersBackend({"model": str(tmp_path / "tiny-sd"), **options})
    built = DiffusersBackend({"tiny": True, "init_seed": 5, **options})

    loaded = from_folder.generate(requests_for("A red cube.", [3, 4]))
    reference = built.generate(requests_for("A red cube.", [3, 4]))

    assert loaded[0].settings["model"] == str(tmp_path / "tiny-sd")
    assert all(np.array_equal(a, b) for a, b in zip(pixels(loaded), pixels(reference), strict=True))


def test_diffusers_backend_reports_a_model_it_cannot_load(monkeypatch):
    from drawbench.backends.base import BackendError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = DiffusersBackend({"model": "no-such-org/no-such-model", "device": "cpu"})

    with pytest.raises(BackendError, match="cannot load pipeline 'no-such-org/no-such-model'.*HF_HUB_OFFLINE"):
        backend.prepare()


# --- the registry of diffusers baselines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "baseline, stages, expected",
    [
        ("sd-1.5", None, [("StableDiffusionPipeline", "stable-diffusion-v1-5/stable-diffusion-v1-5")]),
        ("sd-2.1", None, [("StableDiffusionPipeline", "stabilityai/stable-diffusion-2-1")]),
        ("sdxl", None, [("StableDiffusionXLPipeline", "stabilityai/stable-diffusion-xl-base-1.0")]),
        ("pixart-alpha", None, [("PixArtAlphaPipeline", "PixArt-alpha/PixArt-XL-2-1024-MS")]),
        (
            "deepfloyd-if",
            None,
            [("IFPipeline", "DeepFloyd/IF-I-XL-v1.0"), ("IFSuperResolutionPipeline", "DeepFloyd/IF-II-L-v1.0")],
        ),
        (
            "deepfloyd-if",
            3,
            [
                ("IFPipeline", "DeepFloyd/IF-I-XL-v1.0"),
                ("IFSuperResolutionPipeline", "DeepFloyd/IF-II-L-v1.0"),
                ("StableDiffusionUpscalePipeline", "stabilityai/stable-diffusion-x4-upscaler"),
            ],
        ),
    ],
)
def test_a_baseline_resolves_its_pipeline_classes_and_hub_ids_without_loading_anything(baseline, stages, expected):
    config = {"baseline": baseline, **({"stages": stages} if stages else {})}

    plan = DiffusersBackend(config).load_plan()

    assert [(stage.pipeline, stage.source) for stage in plan] == expected


def test_deepfloyd_if_super_resolution_stages_reuse_the_base_stages_text_encoder():
    plan = DiffusersBackend({"baseline": "deepfloyd-if", "stages": 3, "variant": "fp16"}).load_plan()

    assert plan[0].options == {"variant": "fp16"}
    assert plan[1].options == {"text_encoder": None}
    assert "text_encoder" not in plan[2].options


def test_a_baselines_weights_can_come_from_local_folders_stage_by_stage(tmp_path):
    (tmp_path / "if-1").mkdir()
    config = {"baseline": "deepfloyd-if", "model": [str(tmp_path / "if-1")]}

    plan = DiffusersBackend(config).load_plan()

    assert [stage.source for stage in plan] == [str(tmp_path / "if-1"), "DeepFloyd/IF-II-L-v1.0"]


def test_any_pipeline_loads_through_diffusion_pipeline():
    (stage,) = DiffusersBackend({"model": "org/some-pipeline", "revision": "abc123"}).load_plan()

    assert (stage.pipeline, stage.source, stage.options) == (
        "DiffusionPipeline",
        "org/some-pipeline",
        {"revision": "abc123"},
    )


def test_loading_a_baseline_calls_its_pipeline_class_with_the_dtype_and_hub_options(monkeypatch):
    import diffusers
    import torch

    from drawbench.backends.diffusers_tiny import tiny_sdxl_pipeline

    calls = []

    def from_pretrained(source, **options):
        calls.append((source, options))
        return tiny_sdxl_pipeline(init_seed=1)

    monkeypatch.setattr(diffusers.StableDiffusionXLPipeline, "from_pretrained", from_pretrained)
    backend = DiffusersBackend(
        {"baseline": "sdxl", "variant": "fp16", "revision": "r1", "device": "cpu", "dtype": "float32"}
        | {"num_inference_steps": 2, "height": 64, "width": 64}
    )

    (image,) = backend.generate(requests_for("A red cube.", [5]))

    assert calls == [
        ("stabilityai/stable-diffusion-xl-base-1.0", {"dtype": torch.float32, "variant": "fp16", "revision": "r1"})
    ]
    assert image.settings["model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert image.settings["pipeline"] == "StableDiffusionXLPipeline" and image.image.size == (64, 64)


@pytest.mark.parametrize(
    "config, queue",
    [
        (tiny_model_config(), "cpu"),
        ({"tiny": True}, "cpu"),
        ({"baseline": "sdxl"}, "gpu"),
        ({"baseline": "sdxl", "device": "cuda:1"}, "gpu"),
        ({"baseline": "sdxl", "device": "cpu"}, "cpu"),
        ({"model": "org/name", "device": "mps"}, "gpu"),
        ({"tiny": True, "device": "cuda"}, "gpu"),
        ({"baseline": "sdxl", "queue": "cpu"}, "cpu"),
    ],
)
def test_a_diffusers_backend_asks_for_the_gpu_queue_when_its_model_runs_on_an_accelerator(config, queue):
    assert DiffusersBackend(config).queue() == queue


@pytest.mark.parametrize(
    "config, message",
    [
        ({"baseline": "dall-e-9"}, "unknown baseline 'dall-e-9'"),
        ({"baseline": "sdxl", "stages": 2}, "has 1 stage"),
        ({"baseline": "deepfloyd-if", "stage_options": [{}, {}, {}]}, "at most 2 dict"),
        ({"baseline": "deepfloyd-if", "stage_options": ["fast"]}, "one per stage"),
        ({"baseline": "sdxl", "model": ["a/b", "c/d"]}, "at most 1"),
        ({"baseline": "sdxl", "queue": "tpu"}, "queue 'tpu' is not one of"),
        ({"baseline": "deepfloyd-if", "model": ["/no/such/stage-1"]}, "does not exist"),
    ],
)
def test_diffusers_backend_rejects_a_bad_baseline_config(config, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        DiffusersBackend(config)


# --- the tiny twins of SDXL, PixArt-α and the DeepFloyd IF cascade ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_if():
    config = tiny_model_config(init_seed=4, baseline="deepfloyd-if", num_inference_steps=3)
    backend = DiffusersBackend({**config, "stage_options": [{}, {"num_inference_steps": 2, "noise_level": 100}]})
    backend.prepare()
    return backend


def test_the_tiny_if_cascade_draws_64px_images_reproducibly_from_the_seed(tiny_if):
    first = pixels(tiny_if.generate(requests_for("A red cube.", [11, 12])))
    again = pixels(tiny_if.generate(requests_for("A red cube.", [11, 12])))

    assert first[0].shape == (64, 64, 3)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])


def test_a_tiny_if_image_does_not_depend_on_the_rest_of_the_batch(tiny_if):
    # Batches of one size: kernels may round differently for another batch size (by 1/255 here and there).
    first = pixels(tiny_if.generate(requests_for("A red cube.", [11]) + requests_for("Two dogs.", [5])))[0]
    second = pixels(tiny_if.generate(requests_for("A green cat.", [99]) + requests_for("A red cube.", [11])))[1]

    assert np.array_equal(first, second)


def test_the_tiny_if_cascade_records_each_stages_settings(tiny_if):
    (image,) = tiny_if.generate(requests_for("A red cube.", [3]))

    settings = image.settings
    assert settings["baseline"] == "deepfloyd-if" and settings["seed"] == 3
    stages = settings["stages"]
    assert [s["pipeline"] for s in stages] == ["IFPipeline", "IFSuperResolutionPipeline"]
    assert [s["num_inference_steps"] for s in stages] == [3, 2]
    assert stages[1]["noise_level"] == 100 and stages[0]["guidance_scale"] == 5.0
    assert settings["libraries"]["diffusers"]


def test_the_if_cascade_stops_at_the_stage_asked_for():
    config = tiny_model_config(init_seed=4, baseline="deepfloyd-if", num_inference_steps=2, stages=1)

    (image,) = DiffusersBackend(config).generate(requests_for("A red cube.", [3]))

    assert image.image.size == (16, 16) and "stages" not in image.settings


def test_an_if_cascade_loads_from_local_folders_offline(tmp_path, monkeypatch):
    from drawbench.backends.diffusers_tiny import tiny_if_pipelines

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base, superresolution = tiny_if_pipelines(init_seed=6)
    base.save_pretrained(tmp_path / "if-1")
    superresolution.save_pretrained(tmp_path / "if-2")
    options = {
        "num_inference_steps": 2,
        "device": "cpu",
        "stage_options": [{"clean_caption": False}, {"num_inference_steps": 2}],
    }
    loaded = DiffusersBackend(
        {"baseline": "deepfloyd-if", "model": [str(tmp_path / "if-1"), str(tmp_path / "if-2")], **options}
    )
    built = DiffusersBackend({"baseline": "deepfloyd-if", "tiny": True, "init_seed": 6, **options})

    from_folders = pixels(loaded.generate(requests_for("A red cube.", [8])))
    reference = pixels(built.generate(requests_for("A red cube.", [8])))

    assert from_folders[0].shape == (64, 64, 3) and np.array_equal(from_folders[0], reference[0])


@pytest.mark.parametrize(
    "baseline, pipeline", [("sdxl", "StableDiffusionXLPipeline"), ("pixart-alpha", "PixArtAlphaPipeline")]
)
def test_the_tiny_sdxl_and_pixart_twins_draw_reproducible_images(baseline, pipeline):
    backend = DiffusersBackend(tiny_model_config(init_seed=2, baseline=baseline, num_inference_steps=3))

    first = backend.generate(requests_for("A red cube.", [1, 2]))
    again = backend.generate(requests_for("A red cube.", [1, 2]))

    assert first[0].settings["pipeline"] == pipeline and first[0].image.size == (64, 64)
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(again), strict=True))
    assert not np.array_equal(*pixels(first))


def test_validating_a_config_and_choosing_its_queue_never_imports_torch():
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'drawbench.settings.test'\n"
        "import django; django.setup()\n"
        "from drawbench.backends.diffusers_backend import DiffusersBackend\n"
        "from drawbench.backends.imagen_backend import ImagenBackend\n"
        "queues = [DiffusersBackend({'baseline': 'deepfloyd-if', 'stages': 3}).queue(),\n"
        "          ImagenBackend({'checkpoint': 'imagen_core:toy_base', 'steps': 20}).queue()]\n"
        "print(queues, [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "['gpu', 'gpu'] []"
