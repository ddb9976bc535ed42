"""The imagen_core backend: the offline tiny twin, cascades from stage checkpoints written through imagen_core's own
API, per-stage sampling settings, the settings recorded on every sample, and a generation run end to end."""

import hashlib

import numpy as np
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from drawbench.backends.base import BackendError, SampleRequest
from drawbench.backends.imagen_backend import ImagenBackend, tiny_imagen, tiny_imagen_config
from drawbench.catalog.models import Sample
from drawbench.generation.services import generation_run_create, generation_run_start
from tests.factories import EvaluatedModelFactory

IMAGEN = "drawbench.backends.imagen_backend.ImagenBackend"
TOY_BASE = settings.BASE_DIR / "imagen_core" / "assets" / "toy_base.safetensors"


def requests_for(text: str, seeds) -> list[SampleRequest]:
    return [
        SampleRequest(prompt_id=1, prompt_text=text, prompt_position=1, index=i, seed=s) for i, s in enumerate(seeds)
    ]


def pixels(images) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in images]


@pytest.fixture(scope="module")
def tiny():
    backend = ImagenBackend(tiny_imagen_config(init_seed=3))
    backend.prepare()
    return backend


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """A two-stage cascade saved with imagen_core.checkpoints, named so that the file names sort SR first."""
    from imagen_core.checkpoints import save_checkpoint

    folder = tmp_path_factory.mktemp("imagen-cascade")
    imagen = tiny_imagen(init_seed=5)
    save_checkpoint(folder / "a-sr-32.safetensors", unet=imagen.unets[1], stage=imagen.stages[1], step=7, weights="ema")
    save_checkpoint(
        folder / "b-base-16.safetensors",
        unet=imagen.unets[0],
        stage=imagen.stages[0],
        text_encoder=imagen.text_encoder,
        step=7,
    )
    return folder


# --- the tiny twin --------------------------------------------------------------------------------------------


def test_the_tiny_imagen_twin_gives_the_same_pixels_for_the_same_seed(tiny):
    first = pixels(tiny.generate(requests_for("A red cube.", [11, 12])))
    again = pixels(tiny.generate(requests_for("A red cube.", [11, 12])))

    assert first[0].shape == (32, 32, 3)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert first[0].std() > 5, "an image with no contrast"


def test_a_tiny_imagen_image_depends_on_its_prompt(tiny):
    (red,) = pixels(tiny.generate(requests_for("A red cube.", [11])))
    (dogs,) = pixels(tiny.generate(requests_for("Two dogs on a green lawn.", [11])))

    assert not np.array_equal(red, dogs)


def test_a_tiny_imagen_image_does_not_depend_on_the_rest_of_the_batch(tiny):
    first = pixels(tiny.generate(requests_for("A red cube.", [11, 5])))[0]
    second = pixels(tiny.generate(requests_for("A red cube.", [99, 11])))[1]

    assert np.array_equal(first, second)


def test_the_tiny_imagen_twin_leaves_the_global_rng_alone(tiny):
    import torch

    state = torch.random.get_rng_state()
    ImagenBackend(tiny_imagen_config(init_seed=8)).prepare()
    tiny.generate(requests_for("A red cube.", [1]))

    assert torch.equal(state, torch.random.get_rng_state())


def test_the_imagen_backend_records_its_generation_settings(tiny):
    (image,) = tiny.generate(requests_for("A red cube.", [42]))

    recorded = image.settings
    assert recorded["backend"] == "imagen_core" and recorded["seed"] == 42 and recorded["device"] == "cpu"
    assert (recorded["scheduler"], recorded["num_inference_steps"], recorded["guidance_scale"]) == ("ddim", 4, 3.0)
    assert set(recorded["libraries"]) == {"imagen_core", "torch", "transformers", "safetensors"}
    assert all(recorded["libraries"].values())
    base, sr = recorded["stages"]
    assert (base["image_size"], sr["image_size"]) == (16, 32)
    assert sr["lowres_noise_level"] == 0.2 and "lowres_noise_level" not in base
    assert base["thresholding"] == "dynamic" and recorded["text_encoder"].startswith("tiny-t5:")


# --- checkpoints ----------------------------------------------------------------------------------------------


def test_a_checkpoint_folder_loads_as_a_cascade_ordered_by_image_size(checkpoint_folder):
    backend = ImagenBackend({"checkpoint": str(checkpoint_folder), "device": "cpu", "steps": 3})
    twin = ImagenBackend(tiny_imagen_config(init_seed=5, steps=3))

    loaded = pixels(backend.generate(requests_for("A red cube.", [8])))
    built = pixels(twin.generate(requests_for("A red cube.", [8])))

    assert [p.name for p in backend.checkpoint_paths()] == ["b-base-16.safetensors", "a-sr-32.safetensors"]
    assert loaded[0].shape == (32, 32, 3)
    # The same network: equal to within one level (oneDNN's kernels can round differently for weights that were
    # loaded rather than built: 1 pixel channel of 3,072 by one level on an AVX-512 Xeon), where another network's
    # pixels differ everywhere.
    difference = np.abs(loaded[0].astype(int) - built[0].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_a_cascade_runs_only_the_stages_asked_for(checkpoint_folder):
    backend = ImagenBackend({"checkpoint": [str(checkpoint_folder / "b-base-16.safetensors")], "device": "cpu"})

    (image,) = backend.generate(requests_for("A red cube.", [8]))

    assert image.image.size == (16, 16) and len(image.settings["stages"]) == 1


def test_sampling_settings_apply_per_stage_and_are_recorded(checkpoint_folder):
    config = {
        "checkpoint": str(checkpoint_folder),
        "device": "cpu",
        "steps": [3, 2],
        "cond_scale": [5.0, 8.0],
        "sampler": ["ddim", "dpmpp"],
        "thresholding": "static",
        "lowres_noise_level": 0.1,
    }
    backend = ImagenBackend(config)

    (image,) = backend.generate(requests_for("A red cube.", [8]))
    (other,) = ImagenBackend({**config, "lowres_noise_level": 0.3}).generate(requests_for("A red cube.", [8]))

    base, sr = image.settings["stages"]
    assert (base["steps"], base["cond_scale"], base["sampler"]) == (3, 5.0, "ddim")
    assert (sr["steps"], sr["cond_scale"], sr["sampler"], sr["lowres_noise_level"]) == (2, 8.0, "dpmpp", 0.1)
    assert base["thresholding"] == sr["thresholding"] == "static"
    # The augmentation level reaches the SR stage: another level, another image from the same seed.
    assert not np.array_equal(np.asarray(image.image), np.asarray(other.image))


def test_every_stage_records_its_checkpoints_hash(checkpoint_folder):
    (image,) = ImagenBackend({"checkpoint": str(checkpoint_folder), "device": "cpu", "steps": 2}).generate(
        requests_for("A red cube.", [1])
    )

    expected = [
        hashlib.sha256((checkpoint_folder / name).read_bytes()).hexdigest()
        for name in ("b-base-16.safetensors", "a-sr-32.safetensors")
    ]
    assert [stage["checkpoint_sha256"] for stage in image.settings["stages"]] == expected


def test_a_missing_checkpoint_is_reported_with_its_path(tmp_path):
    backend = ImagenBackend({"checkpoint": str(tmp_path / "nowhere.safetensors")})

    with pytest.raises(BackendError, match=f"no imagen_core checkpoint at {tmp_path / 'nowhere.safetensors'}"):
        backend.prepare()


def test_imagen_core_prefix_names_a_checkpoint_shipped_in_this_code_base(tmp_path, settings):
    settings.BASE_DIR = tmp_path
    shipped = tmp_path / "imagen_core" / "assets" / "toy_base.safetensors"
    backend = ImagenBackend({"checkpoint": "imagen_core:toy_base"})
    with pytest.raises(BackendError, match=f"no imagen_core checkpoint at {shipped}"):
        backend.checkpoint_paths()

    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"")

    assert backend.checkpoint_paths() == [shipped]


def test_the_shipped_toy_checkpoint_draws_32px_images_and_records_its_hash():
    backend = ImagenBackend({"checkpoint": "imagen_core:toy_base", "device": "cpu", "steps": 10})

    first = backend.generate(requests_for("a red circle", [3, 4]))
    again = backend.generate(requests_for("a red circle", [3, 4]))

    assert first[0].image.size == (32, 32)
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(again), strict=True))
    (stage,) = first[0].settings["stages"]
    assert stage["checkpoint_sha256"] == hashlib.sha256(TOY_BASE.read_bytes()).hexdigest()
    assert first[0].settings["model"] == "imagen_core:toy_base" and stage["steps"] == 10


def test_bfloat16_autocast_draws_images_and_says_so():
    (image,) = ImagenBackend(tiny_imagen_config(init_seed=3, dtype="bfloat16")).generate(requests_for("A cube.", [1]))

    assert image.image.size == (32, 32) and image.settings["dtype"] == "bfloat16"


# --- configuration --------------------------------------------------------------------------------------------


# --- DeepFloyd IF, converted --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted_if(tmp_path_factory):
    """The tiny IF twin's two stages converted by imagen_core.convert, and its T5 saved as a local folder: what a
    user has after downloading IF-I-XL, IF-II-L and t5-v1_1-xxl and converting the stages."""
    from drawbench.backends.diffusers_tiny import tiny_if_pipelines
    from imagen_core.convert import convert_from_diffusers

    folder = tmp_path_factory.mktemp("deepfloyd-if")
    base, superresolution = tiny_if_pipelines(init_seed=2)
    for name, pipe in (("IF-I", base), ("IF-II", superresolution)):
        pipe.unet.save_pretrained(folder / name / "unet")
        pipe.scheduler.save_pretrained(folder / name / "scheduler")
    base.text_encoder.save_pretrained(folder / "t5")
    base.tokenizer.save_pretrained(folder / "t5")
    stages = folder / "stages"
    for name in ("IF-I", "IF-II"):
        convert_from_diffusers(folder / name, stages / f"{name}.safetensors", text_encoder_name="t5-v1_1-xxl")
    return {"stages": stages, "t5": folder / "t5", "pipeline": base}


def test_imagen_core_runs_converted_if_stages_with_a_local_t5(converted_if):
    config = {"checkpoint": str(converted_if["stages"]), "text_encoder": str(converted_if["t5"]), "device": "cpu"}
    backend = ImagenBackend({**config, "steps": [4, 3]})

    first = pixels(backend.generate(requests_for("a red cube.", [3, 4])))
    again = pixels(ImagenBackend({**config, "steps": [4, 3]}).generate(requests_for("a red cube.", [3])))

    assert [p.name for p in backend.checkpoint_paths()] == ["IF-I.safetensors", "IF-II.safetensors"]
    assert first[0].shape == (64, 64, 3)
    # Batched and single matrix products round differently, and IF's first step divides by alpha ≈ 5e-5: the same
    # seed gives the same image to within one level, not bit for bit.
    assert np.abs(first[0].astype(int) - again[0].astype(int)).max() <= 1
    assert np.abs(first[0].astype(int) - first[1].astype(int)).mean() > 10
    recorded = backend.describe()
    assert recorded["text_encoder"] == str(converted_if["t5"])
    assert [s["sampler"] for s in recorded["stages"]] == ["ancestral", "ancestral"]
    assert recorded["stages"][1]["lowres_noise_level"] == 0.25


def test_converted_if_base_stage_draws_the_pixels_diffusers_if_pipeline_draws(converted_if):
    """Same prompt, seed and steps: imagen_core's backend and diffusers' IFPipeline (its own T5 encoding of the
    prompt, lower-cased as IF does, and of the empty negative prompt) give the same image, to within one level of
    rounding."""
    import torch

    from imagen_core.training import tensor_to_uint8

    backend = ImagenBackend(
        {
            "checkpoint": [str(converted_if["stages"] / "IF-I.safetensors")],
            "text_encoder": str(converted_if["t5"]),
            "device": "cpu",
            "steps": 6,
        }
    )
    (ours,) = pixels(backend.generate(requests_for(" A red cube on a GREEN lawn.", [21])))
    with torch.no_grad():
        theirs = converted_if["pipeline"](
            " A red cube on a GREEN lawn.",
            num_inference_steps=6,
            guidance_scale=7.0,
            generator=[torch.Generator().manual_seed(21)],
            output_type="pt",
            clean_caption=False,
        ).images
    (theirs,) = tensor_to_uint8(theirs)

    assert ours.shape == theirs.shape == (16, 16, 3)
    assert ours.std() > 5
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_converted_if_cascade_draws_the_pixels_of_diffusers_if_base_then_superresolution(converted_if):
    """Both stages: IF's stage II upsampling (align_corners=True), its augmentation level 250 and its order of noise
    draws, on the tiny IF twin. Its 64x64 images agree with diffusers' to within one level of rounding."""
    import torch

    from drawbench.backends.diffusers_tiny import tiny_if_pipelines
    from imagen_core.training import tensor_to_uint8

    backend = ImagenBackend(
        {
            "checkpoint": str(converted_if["stages"]),
            "text_encoder": str(converted_if["t5"]),
            "device": "cpu",
            "steps": [5, 4],
        }
    )
    (ours,) = pixels(backend.generate(requests_for("A red cube.", [33])))
    base, superresolution = tiny_if_pipelines(init_seed=2)
    with torch.no_grad():
        prompt_embeds, negative_embeds = base.encode_prompt("A red cube.", clean_caption=False)
        generator = [torch.Generator().manual_seed(33)]
        low = base(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            num_inference_steps=5,
            generator=generator,
            output_type="pt",
        ).images
        theirs = superresolution(
            image=low.clamp(-1, 1),
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            num_inference_steps=4,
            generator=generator,
            output_type="pt",
        ).images
    (theirs,) = tensor_to_uint8(theirs)

    assert ours.shape == theirs.shape == (64, 64, 3)
    assert ours.std() > 5
    difference = np.abs(ours.astype(int) - theirs.astype(int))
    assert difference.max() <= 1


@pytest.mark.parametrize(
    "config, message",
    [
        ({}, "exactly one of 'checkpoint' and 'tiny'"),
        ({"tiny": True, "checkpoint": "x.safetensors"}, "exactly one of"),
        ({"tiny": True, "guidance": 3}, "unknown config key"),
        ({"tiny": True, "steps": "ten"}, "has the wrong type"),
        ({"tiny": True, "steps": [3, True]}, "has the wrong type"),
        ({"tiny": True, "steps": [3, 2], "cond_scale": [1.0, 2.0, 3.0]}, "one value per stage"),
        ({"tiny": True, "stages": 1, "steps": [3, 2]}, "one value per stage"),
        ({"tiny": True, "sampler": "euler"}, "stage 1: SamplerConfig: unknown sampler 'euler'"),
        ({"tiny": True, "lowres_noise_level": [0.1, 1.5]}, "stage 2: .*lowres_noise_level must be in"),
        ({"tiny": True, "stages": 0}, "at least 1"),
        ({"tiny": True, "dtype": "float8"}, "is not one of"),
        ({"tiny": True, "queue": "tpu"}, "is not one of"),
    ],
)
def test_imagen_backend_rejects_a_bad_config_before_loading_anything(config, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        ImagenBackend(config)


@pytest.mark.parametrize(
    "config, queue",
    [
        (tiny_imagen_config(), "cpu"),
        ({"tiny": True}, "cpu"),
        ({"checkpoint": "imagen_core:toy_base"}, "gpu"),
        ({"checkpoint": "/models/imagen", "device": "cuda:3"}, "gpu"),
        ({"checkpoint": "/models/imagen", "device": "cpu"}, "cpu"),
        ({"checkpoint": "/models/imagen", "queue": "cpu"}, "cpu"),
    ],
)
def test_the_imagen_backend_asks_for_the_gpu_queue_when_it_runs_on_an_accelerator(config, queue):
    assert ImagenBackend(config).queue() == queue


# --- a generation run -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_generation_run_of_the_imagen_backend_stores_samples_with_their_settings(
    prompt_set, fresh_media, django_capture_on_commit_callbacks
):
    model = EvaluatedModelFactory(name="imagen-tiny", backend=IMAGEN, config=tiny_imagen_config(init_seed=3))
    run = generation_run_create(evaluated_model=model, prompt_set=prompt_set, samples_per_prompt=2)

    with django_capture_on_commit_callbacks(execute=True):
        generation_run_start(run=run)

    samples = list(Sample.objects.filter(evaluated_model=model))
    run.refresh_from_db()
    assert run.status == "done" and run.queue == "cpu" and len(samples) == 6
    for sample in samples:
        assert (sample.width, sample.height) == (32, 32)
        assert sample.settings["seed"] == sample.seed and sample.settings["backend"] == "imagen_core"
        assert sample.settings["stages"][1]["lowres_noise_level"] == 0.2
        assert sample.settings["libraries"]["torch"] and sample.settings["device"] == "cpu"
