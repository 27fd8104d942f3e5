"""Which Whisper-encoder layer keeps the emotion? A classifier on each layer's mean-pooled states.

Encodes every labelled clip of two splits on its true length (the model's masked variable-length
encoder), mean-pools the output of every encoder layer (the last one after the final LayerNorm, as the
adapter sees it), fits the cascade's classifier recipe (standardisation + balanced logistic regression,
``blsp_emo.evaluation.ser_classifier.fit_classifier``) per layer on the train split and prints its
accuracy on the eval split. Usage:
    python scripts/encoder_layer_probe.py runs/reproduce-tiny-v2/corpus/emotion.jsonl [--whisper tiny]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from blsp_emo.assets import load_whisper
from blsp_emo.evaluation.dataset import load_utterances
from blsp_emo.evaluation.ser_classifier import fit_classifier
from blsp_emo.model.encoder import encode_windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="a labelled manifest with train and eval splits")
    parser.add_argument("--whisper", default="tiny", help="Whisper preset, embedded name, folder or hub id")
    parser.add_argument("--train", default="train")
    parser.add_argument("--eval", default="dev")
    parser.add_argument("-C", type=float, default=0.1, help="inverse regularisation strength")
    args = parser.parse_args()
    model, processor = load_whisper(args.whisper)
    encoder = model.get_encoder()
    outputs: dict[int, torch.Tensor] = {}
    for index, layer in enumerate(encoder.layers):
        layer.register_forward_hook(
            lambda _m, _i, out, index=index: outputs.__setitem__(
                index, out[0] if isinstance(out, tuple) else out
            )
        )
    pooled: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for split in (args.train, args.eval):
        utterances = [u for u in load_utterances(args.manifest, split=split) if u.emotion is not None]
        feats = []
        for u in tqdm(utterances, desc=f"encode {split}"):
            mel = processor.feature_extractor(
                u.load()[: 30 * 16000], sampling_rate=16000, return_tensors="pt"
            )
            mel = mel["input_features"]
            with torch.no_grad():
                last, lengths = encode_windows(encoder, mel, torch.tensor([mel.shape[-1]]))
            n = int(lengths[0])
            layers = [outputs[i][0, :n].mean(0) for i in range(len(encoder.layers))] + [last[0, :n].mean(0)]
            feats.append(torch.stack(layers).numpy())
        pooled[split] = (feats, [u.emotion for u in utterances])
    (train_x, train_y), (eval_x, eval_y) = pooled[args.train], pooled[args.eval]
    print(
        f"{args.manifest}: {len(train_y)} {args.train} -> {len(eval_y)} {args.eval} utterances, C={args.C:g}"
    )
    for layer in range(len(encoder.layers) + 1):
        x = np.stack([f[layer] for f in train_x])
        classifier = fit_classifier(x, train_y, c=args.C)
        predicted = classifier.predict(np.stack([f[layer] for f in eval_x]))
        accuracy = np.mean(np.array(predicted) == np.array(eval_y))
        name = f"layer {layer + 1}" if layer < len(encoder.layers) else "final LayerNorm (adapter input)"
        print(f"  {name}: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
