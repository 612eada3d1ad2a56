"""Evaluation: metrics, cached feature extraction, the VOC2007 SVM protocol, fine-tuning and
cross-modal retrieval."""
