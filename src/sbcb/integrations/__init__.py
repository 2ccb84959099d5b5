"""Bridges to other libraries, each behind its optional extra; nothing here is imported by `import sbcb`.

- `sbcb.integrations.torchmetrics`: sbcb's metrics as `torchmetrics.Metric` subclasses (``sbcb[torchmetrics]``).
- `sbcb.integrations.lightning`: a `LightningModule` that trains any SBCB or plain model (``sbcb[lightning]``).
"""
