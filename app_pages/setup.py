"""Setup: dataset, model, forget set and recipe; train the original and the oracle."""

import dataclasses

import streamlit as st

from ui import poison as poison_ui
from ui import own_references, state, widgets
from unlearn_core.config import (ADAPTED_PREFIXES, AUGMENTATIONS, DEFAULT_ENCODER, DEVICES,
                                 ENCODER_MODELS, FORGET_KINDS, ORACLE_INITS, PAPER_SCALE, PRECISIONS,
                                 USER_MODULE, BottleneckSpec, DataSpec, ForgetSpec, ModelSpec,
                                 PoisonSpec, SetupSpec, TrainSpec)
from unlearn_core.data import list_datasets, load_dataset, make_split, read_index_csv
from unlearn_core import figures
from unlearn_core.errors import UserError
from unlearn_core.models import build_model, list_models
from unlearn_core.pipeline import reference_roles, train_references
from unlearn_core.training import reference_key
from unlearn_core.vocabulary import PARTS

FORGET_LABELS = {"classes": "Whole classes", "random": "Random (IID) fraction",
                 "non_iid": "Fraction of chosen classes (non-IID)", "indices": "Uploaded index CSV",
                 "poison": "Poisoned examples (a backdoor)"}

@st.cache_data(show_spinner="Checking the model...", max_entries=32)
def model_problem(model_json: str, in_channels: int, num_classes: int, image_size: int) -> str | None:
    """Why an adapted model cannot serve this data (its module imported, called and run on
    a sample batch, the split into stages checked), or None; once per model spec, before
    anything trains."""
    try:
        build_model(ModelSpec.from_json(model_json), in_channels=in_channels,
                    num_classes=num_classes, image_size=image_size)
    except UserError as exc:
        return str(exc)
    return None


st.title("Setup")
st.caption("Choose the data, the model and what to forget. The original model and the "
           "retrain oracle are trained once per setup and cached on disk.")

current = state.current_setup()
datasets = {d.name: d for d in list_datasets()}
models = {m.name: m for m in list_models()}

left, right = st.columns(2)
with left:
    st.subheader("Data and model")
    name = st.selectbox("Dataset", list(datasets), key="dataset",
                        index=list(datasets).index(current.data.name),
                        format_func=lambda n: f"{n} — {datasets[n].description}")
    root, download, image_size = current.data.root, False, current.data.image_size
    if datasets[name].needs_root:
        root = st.text_input("Dataset folder (root)", value=root or "", key="root",
                             help="a folder on this machine holding the dataset files") or None
        download = st.checkbox("Download into this folder if missing", value=False, key="download",
                               help="only when ticked does anything touch the network")
        if name == "imagefolder":
            image_size = st.number_input("Resize images to", 8, 512, value=image_size, key="image_size")
    model_name = st.selectbox("Model", list(models), key="model",
                              index=list(models).index(current.model.name),
                              format_func=lambda n: f"{n} — {models[n].description}")
    width = 1.0  # a user module sets its own size
    if model_name != USER_MODULE:
        width = st.number_input("Width multiplier", 0.0625, 8.0, value=float(current.model.width),
                                step=0.25, key="width")
    encoder, bottleneck = None, None
    adapted = dict(entry_point=None, probe_layers=(), head=None, small_stem=False, weights=None)
    if model_name == USER_MODULE:
        adapted["entry_point"] = st.text_input(
            "Entry point (module:function)", value=current.model.entry_point or "",
            key="entry_point", placeholder="mypackage.models:build or /path/to/models.py:build",
            help="a function returning your nn.Module classifier; it may take num_classes, "
                 "in_channels and image_size by name. Checked (imported, called, run on a "
                 "sample batch) before anything trains") or None
    if model_name == USER_MODULE or model_name.startswith(ADAPTED_PREFIXES):
        layers = st.text_input("Probe layers (module names, comma-separated)",
                               value=", ".join(current.model.probe_layers), key="probe_layers",
                               help="each must end a stage (a whole block); empty: the model's "
                                    "default blocks")
        adapted["probe_layers"] = tuple(x.strip() for x in layers.split(",") if x.strip())
        adapted["head"] = st.text_input(
            "Classifier head (module name)", value=current.model.head or "", key="head",
            help="the nn.Linear producing the logits; empty: found automatically") or None
    if model_name.startswith("torchvision/"):
        adapted["small_stem"] = st.checkbox(
            "Adapt the ImageNet stem to small images", value=current.model.small_stem,
            key="small_stem", help="a 3x3 stride-1 first convolution and no max-pool (a ViT "
                                   "gets small patches)")
        adapted["weights"] = st.text_input(
            "Weights file (optional)", value=current.model.weights or "", key="weights",
            help=".safetensors or a weights-only .pt/.pth on this machine; a classifier with "
                 "another number of classes is re-initialised") or None
    if model_name in ENCODER_MODELS:
        encoders = [m for m in models if m not in ENCODER_MODELS]
        encoder = st.selectbox("Encoder", encoders, key="encoder",
                               index=encoders.index(current.model.encoder or DEFAULT_ENCODER),
                               help="the model whose trained original lends its frozen trunk "
                                    "(trained with the recipe below, then cached)")
    if model_name == "dkvb":
        b = current.model.bottleneck or BottleneckSpec()
        paper = st.checkbox("The paper's scale", key="paper_scale",
                            value=all(getattr(b, k) == v for k, v in PAPER_SCALE.items()),
                            help=" x ".join(f"{k} {v}" for k, v in PAPER_SCALE.items()) +
                                 ": minutes to train on a CPU")
        if paper:
            bottleneck = dict(PAPER_SCALE)
        else:
            c1, c2, c3 = st.columns(3)
            bottleneck = {
                "codebooks": int(c1.number_input("Codebooks C", 1, 4096, value=b.codebooks,
                                                 key="codebooks")),
                "keys": int(c2.number_input("Keys per codebook P", 2, 65536, value=b.keys,
                                            key="keys")),
                "key_dim": int(c3.number_input("Key dimension", 1, 1024, value=b.key_dim,
                                               key="key_dim"))}
    seed = st.number_input("Seed", 0, 2**31 - 1, value=current.seed, key="seed")
    device = st.selectbox("Device", DEVICES, index=DEVICES.index(current.device), key="device",
                          help="auto picks CUDA, then MPS, then the CPU")
    with st.expander("Training recipe (original and oracle)"):
        t = current.train
        epochs = st.number_input("Epochs", 1, 1000, value=t.epochs, key="epochs")
        lr = st.number_input("Learning rate", 1e-5, 10.0, value=t.lr, format="%g", key="lr")
        batch_size = st.number_input("Batch size", 1, 65536, value=t.batch_size, key="batch_size")
        augment = st.selectbox("Augmentation", AUGMENTATIONS, index=AUGMENTATIONS.index(t.augment),
                               key="augment",
                               help="crop suits digits; crop_flip suits natural images")
        precision = st.selectbox("Precision", PRECISIONS, index=PRECISIONS.index(t.precision),
                                 key="precision", help="bf16 or fp16 mixed precision on a CUDA "
                                                       "device (refused on a CPU or MPS)")
        oracle_init = st.selectbox(
            "Oracle initialisation", ORACLE_INITS, index=ORACLE_INITS.index(current.oracle_init),
            key="oracle_init", format_func={"same": "same as the original",
                                            "independent": "independent seed"}.get,
            help="same: the oracle differs from the original only by the forget data. "
                 "independent: another seed, as a retrain from scratch; a twin original "
                 "with that seed is trained too and its distance to the original (seed "
                 "noise) is drawn as a band on the Layers page")

try:
    data_spec = DataSpec(name, root, download, int(image_size))
    # The preview never downloads: a download runs in the background with training.
    dataset = load_dataset(dataclasses.replace(data_spec, download=False))
except UserError as exc:
    dataset = None
    data_error = exc

with right:
    st.subheader("Forget set")
    kind = st.radio("Kind", FORGET_KINDS, index=FORGET_KINDS.index(current.forget.kind), key="forget_kind",
                    format_func=FORGET_LABELS.get)
    classes, fraction, indices = current.forget.classes or (0,), current.forget.fraction or 0.1, ()
    class_names = list(dataset.classes) if dataset is not None else []
    if kind in ("classes", "non_iid") and class_names:
        chosen = st.multiselect("Classes to forget", range(len(class_names)), key="forget_classes",
                                default=[c for c in classes if c < len(class_names)],
                                format_func=lambda c: f"{c}: {class_names[c]}")
        classes = tuple(chosen)
    if kind in ("random", "non_iid"):
        fraction = st.slider("Fraction to forget", 0.01, 0.99, value=float(fraction), step=0.01,
                             key="forget_fraction")
    poison = None
    if kind == "poison" and class_names:
        poison = poison_ui.poison_form(current.forget.poison, class_names)
    if kind == "indices":
        upload = st.file_uploader("CSV of training-set indices", type=["csv", "txt"], key="forget_csv",
                                  help="integers separated by commas or new lines; "
                                       "an optional header line")
        if upload is not None:
            try:
                indices = read_index_csv(upload.getvalue())
            except UserError as exc:
                st.error(str(exc))

if dataset is None:
    st.error(str(data_error))
    if not download:
        st.stop()

try:
    spec = SetupSpec(data_spec, ForgetSpec(kind, classes, fraction, indices,
                                           poison=None if poison is None else PoisonSpec(**poison)),
                     ModelSpec(model_name, float(width), encoder=encoder,
                               bottleneck=None if bottleneck is None else BottleneckSpec(**bottleneck),
                               **adapted),
                     TrainSpec(epochs=int(epochs), lr=float(lr), batch_size=int(batch_size),
                               augment=augment, precision=precision),
                     seed=int(seed), device=device, oracle_init=oracle_init)
    split = make_split(dataset, spec.forget, spec.seed) if dataset is not None else None
    if dataset is not None and (spec.model.name == USER_MODULE or
                                spec.model.name.startswith(ADAPTED_PREFIXES)):
        problem = model_problem(spec.model.to_json(), dataset.in_channels, dataset.num_classes,
                                dataset.image_size)
        if problem is not None:
            raise UserError(problem)
except UserError as exc:
    st.error(str(exc))
    st.stop()
store = state.store()
spec = own_references.with_imported_references(spec, store)
state.set_setup(spec)

if dataset is not None:
    for note in dataset.notes:
        st.warning(note)
    st.subheader("Split")
    cols = st.columns(4)
    labels = {part.split_attr: figures.ACCURACY_LABELS[part.accuracy_key] for part in PARTS}
    for col, (key, size) in zip(cols, split.sizes().items()):
        col.metric(labels[key], f"{size:,}")
    if spec.forget.kind == "poison":
        poison_ui.poisoned_pairs(dataset, split, spec.forget.poison, spec.seed)
    else:
        widgets.forget_set_chart(dataset, split)
        shown = split.forget[:16].copy()  # a writable copy for torch indexing
        widgets.image_grid(dataset.train.images[shown].numpy(),
                           [f"#{i} · {dataset.classes[int(dataset.train.labels[i])]}" for i in shown])

st.subheader("Original and retrain oracle")
roles = reference_roles(spec)
cached = {role: store.cache_has(reference_key(spec, role)) for role in roles}
cols = st.columns(len(roles))
for col, (role, ok) in zip(cols, cached.items()):
    name = "Twin original (seed noise)" if role == "twin" else role.capitalize()
    imported = own_references.imported_name(spec, role) if role != "twin" else None
    col.write(f"**{name}**: " + (f"imported from `{imported}`" if imported else
                                 "trained (cached)" if ok else "not trained yet"))
if all(cached.values()):
    st.success(f"{'All three' if len(roles) == 3 else 'Both'} models are ready. Go on to "
               "unlearning.")
    st.page_link("app_pages/unlearn.py", label="Unlearn", icon=":material/arrow_forward:")
elif st.button("Train original and oracle", type="primary", disabled=state.busy(), key="train"):
    state.submit(f"Train {spec.data.name}/{spec.model.name}",
                 lambda progress: train_references(spec, store, progress).original.meta)
    st.rerun()
own_references.reference_import_section(spec)
