"""The KD loss against its formula (Hinton et al. 2015) and its properties."""

import torch
import torch.nn.functional as F

from distillguard.train.kd import kd_loss


def _direct(student, teacher, T):
    p_t = torch.softmax(teacher / T, dim=-1)
    log_p_s = torch.log_softmax(student / T, dim=-1)
    per_example = (p_t * (torch.log(p_t) - log_p_s)).sum(dim=-1)
    return T * T * per_example.mean()


def test_matches_direct_formula_batchmean():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 7, generator=g), torch.randn(16, 7, generator=g) * 3
    for T in (0.5, 1.0, 4.0):
        assert torch.allclose(kd_loss(s, t, temperature=T), _direct(s, t, T), atol=1e-6)


def test_is_not_divided_by_number_of_classes():
    # reduction="mean" would divide by batch * classes; batchmean divides by batch only.
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 50, generator=g), torch.randn(8, 50, generator=g)
    wrong = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="mean")
    assert torch.allclose(kd_loss(s, t, temperature=1.0), wrong * 50, atol=1e-6)


def test_zero_for_identical_distributions():
    z = torch.randn(10, 5)
    for T in (1.0, 3.0):
        assert float(kd_loss(z, z, temperature=T)) < 1e-6
        assert float(kd_loss(z + 7.0, z, temperature=T)) < 1e-6  # softmax is shift-invariant


def test_temperature_squared_scaling():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    # L(T) = T² · L_{T=1}(z/T): the T² factor keeps gradient scale comparable across T.
    assert torch.allclose(kd_loss(s, t, temperature=2.0), 4 * kd_loss(s / 2, t / 2, temperature=1.0), atol=1e-6)


def test_alpha_mixes_cross_entropy_on_teacher_argmax():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    ce = F.cross_entropy(s, t.argmax(-1))
    assert torch.allclose(kd_loss(s, t, temperature=2.0, alpha=1.0), ce, atol=1e-6)
    mixed = kd_loss(s, t, temperature=2.0, alpha=0.25)
    assert torch.allclose(mixed, 0.75 * _direct(s, t, 2.0) + 0.25 * ce, atol=1e-6)


def test_positive_and_gradient_flows_to_student_only():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3)
    loss = kd_loss(s, t, temperature=2.0)
    loss.backward()
    assert float(loss) > 0 and s.grad is not None and s.grad.abs().sum() > 0


def test_same_numbers_as_torch_kl_div_and_one_vmapped_call_for_stacked_students():
    """Written out so that vmap has a rule for every op: the audit's stacked shadow students then take one loss
    call per step instead of one per model, with kl_div's loss and gradient to the bit."""
    from torch.func import vmap

    from distillguard.train.stacked import loss_vmappable

    g = torch.Generator().manual_seed(2)
    for B, C, T in ((64, 100, 2.0), (3, 2, 0.5)):
        s, t = torch.randn(B, C, generator=g, requires_grad=True), 3 * torch.randn(B, C, generator=g)
        ours = kd_loss(s, t, temperature=T)
        torch_kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                            reduction="batchmean") * T * T
        assert torch.equal(ours, torch_kl)
        assert torch.equal(torch.autograd.grad(ours, s)[0], torch.autograd.grad(torch_kl, s)[0])
    stacked_s, stacked_t = torch.randn(4, 8, 10, generator=g), torch.randn(4, 8, 10, generator=g)
    loss = lambda z, y: kd_loss(z, y, temperature=2.0)  # noqa: E731
    assert loss_vmappable(loss, stacked_s, stacked_t)
    per_model = torch.stack([loss(z, y) for z, y in zip(stacked_s, stacked_t)])
    assert torch.allclose(vmap(loss)(stacked_s, stacked_t), per_model, rtol=1e-6)
