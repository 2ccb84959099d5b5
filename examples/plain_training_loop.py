"""A user's own training loop with SBCB: any segmentation model, a DataLoader and an optimizer.

    .venv/bin/python examples/plain_training_loop.py --steps 20 --size 128 256

The boundary ground truth is generated on the fly from each batch's masks, on the training device.
"""

import argparse

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.utils.data import DataLoader

from sbcb import SBCB
from sbcb.data import SyntheticStreets


def to_tensors(samples):  # raw dict samples -> normalized images [B, 3, H, W] and masks [B, H, W]
    images = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).float() / 255.0
    masks = torch.from_numpy(np.stack([s["label"] for s in samples])).long()
    return (images - 0.5) / 0.25, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--save", help="write the stripped model's state_dict here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    dataset = SyntheticStreets(num_samples=args.steps * args.batch_size, size=args.size)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=to_tensors)
    num_classes = dataset.info.num_classes
    model = smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=num_classes)

    net = SBCB(model, num_classes=num_classes).to(device)  # sides picked from the encoder's feature info
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    net.train()
    for step, (images, masks) in enumerate(loader):
        losses = net(images.to(device), masks.to(device))  # loss_seg, loss_sbd_fuse, loss_sbd_last
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        print(step, " ".join(f"{k}={v.item():.3f}" for k, v in losses.items()))

    deployable = net.strip()  # the original smp model: same keys, parameters and outputs as a plain baseline
    if args.save:
        torch.save(deployable.state_dict(), args.save)


if __name__ == "__main__":
    main()
