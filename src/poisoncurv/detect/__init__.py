"""Sample-level backdoor detectors on a model's features, and the metrics that score them.

Each detector takes ``features`` ``(N, p)`` (a tensor or an array) and integer ``labels`` ``(N,)``, works
class by class, and returns a :class:`~poisoncurv.detect.base.Detection`: a score per sample (larger is
more suspicious) and the samples it would remove. :mod:`.metrics` turns scores and flags into TPR, FPR and
ROC-AUC. Everything runs in float64 numpy on the CPU.
"""
