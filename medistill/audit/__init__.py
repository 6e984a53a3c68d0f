"""Privacy audit of a synthetic set: nearest real images (pixel L2, embedding L2, SSIM), flags against
the real data's own nearest-neighbour spacing, and a membership-inference attack; a report with pictures."""
from .membership import MembershipConfig, loss_attack_auc, rank_auc
from .nearest import nearest_neighbors, nearest_neighbors_loop
from .privacy_audit import AuditConfig, AuditResult, run_audit
from .report import write_report
from .ssim import most_similar, ssim

__all__ = ["AuditConfig", "AuditResult", "MembershipConfig", "loss_attack_auc", "most_similar", "nearest_neighbors",
           "nearest_neighbors_loop", "rank_auc", "run_audit", "ssim", "write_report"]
