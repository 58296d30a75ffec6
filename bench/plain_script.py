"""A plain PyTorch baseline, as a researcher writes it in an afternoon (no medlens): small CNN, AdamW,
one-cycle LR, flips and shifts, trained for a wall-clock budget; the final-epoch model is scored on --test.

    .venv/bin/python bench/plain_script.py --train T.csv --test S.csv --size 64 --seconds 300 --out r.json

CSV columns image,label; image: a png/jpg/tif path, or ``file.npz::key::index`` (or ``file.npz::key[index]``).
"""

import argparse
import json
import re
import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

p = argparse.ArgumentParser()
p.add_argument("--train", required=True)
p.add_argument("--test", required=True)
p.add_argument("--size", type=int, default=128)
p.add_argument("--rgb", action="store_true")
p.add_argument("--seconds", type=float, required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
args = p.parse_args()
torch.set_num_threads(2)
torch.manual_seed(args.seed)
np.random.seed(args.seed)
arrays = {}


def read(ref):
    if "::" in ref:
        path, key, idx = re.match(r"^(.+?)::([^:\[]+)(?:::|\[)(\d+)\]?$", ref).groups()
        if (path, key) not in arrays:
            arrays[path, key] = np.load(path)[key]
        img = Image.fromarray(arrays[path, key][int(idx)])
    else:
        img = Image.open(ref)
    img = img.convert("RGB" if args.rgb else "L").resize((args.size, args.size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


train = pd.read_csv(args.train, dtype=str, keep_default_na=False)
test = pd.read_csv(args.test, dtype=str, keep_default_na=False)
classes = sorted(train["label"].unique())
x_tr = torch.from_numpy(np.stack([read(r) for r in train["image"]]))  # uint8, normalised per batch
x_te = torch.from_numpy(np.stack([read(r) for r in test["image"]]))
y_tr = torch.tensor([classes.index(v) for v in train["label"]])
y_te = np.array([classes.index(v) for v in test["label"]])
n_px = x_tr.numel() / x_tr.shape[1]  # per-channel mean / std of train, summed in chunks
mean = sum(x_tr[i : i + 512].double().sum((0, 2, 3)) for i in range(0, len(x_tr), 512)) / n_px
sq = sum((x_tr[i : i + 512].double() ** 2).sum((0, 2, 3)) for i in range(0, len(x_tr), 512)) / n_px
std = (sq - mean**2).sqrt()
mean, std = mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


def norm(x):
    return (x.float() - mean) / std


def block(i, o):
    return nn.Sequential(
        nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)
    )


model = nn.Sequential(
    block(x_tr.shape[1], 32), block(32, 64), block(64, 128), block(128, 256),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, len(classes)),
)  # fmt: skip
opt = torch.optim.AdamW(model.parameters(), lr=3e-3 / 25, weight_decay=1e-2)
pad, bs, steps = max(2, args.size // 16), 32, (len(x_tr) + 31) // 32


def augment(x):
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    x = F.pad(x, (pad,) * 4, mode="reflect")
    ij = torch.randint(0, 2 * pad + 1, (len(x), 2))
    return torch.stack([xi[:, i : i + args.size, j : j + args.size] for xi, (i, j) in zip(x, ij.tolist())])


def run_epoch(sched=None):
    model.train()
    perm = torch.randperm(len(x_tr))
    for k in range(0, len(perm), bs):
        idx = perm[k : k + bs]
        loss = F.cross_entropy(model(augment(norm(x_tr[idx]))), y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched:
            sched.step()


# Epoch 1 (at one-cycle's starting LR) is timed; one-cycle over the epochs that fit the rest follows.
t0 = time.time()
run_epoch()
t1 = time.time() - t0
left = max(0, round((args.seconds - t1) / t1))  # epochs nearest to the budget
if left > 0:
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=left * steps)
    for _ in range(left):
        run_epoch(sched)
train_seconds = time.time() - t0

model.eval()
with torch.no_grad():
    prob = torch.cat([model(norm(x_te[i : i + 256])).softmax(1) for i in range(0, len(x_te), 256)]).numpy()
pred = prob.argmax(1)
try:
    if len(classes) == 2:
        auc = roc_auc_score(y_te == 1, prob[:, 1])
    else:
        auc = roc_auc_score(y_te, prob, multi_class="ovr", average="macro", labels=range(len(classes)))
except ValueError:  # a class missing from the test set
    auc = None
result = {
    "script": "plain",
    "train_seconds": round(train_seconds, 2),
    "epochs": 1 + left,
    "n_train": len(x_tr),
    "n_test": len(x_te),
    "accuracy": accuracy_score(y_te, pred),
    "macro_f1": f1_score(y_te, pred, average="macro", labels=range(len(classes))),
    "auc": auc,
    "classes": classes,
}
with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result))
