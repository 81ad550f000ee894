"""A straightforward hand-written Gatys et al. loop (the benchmark's reference, not part of the package).

Written the way a course notebook would: walk the VGG ``features`` Sequential, keep the outputs of the
chosen layers, Gram matrices by hand, one optimizer over the pixels.
"""
import torch


def features_at(seq, x, wanted):
    out = {}
    for name, module in seq.named_children():
        x = module(x)
        key = f"features.{name}"
        if key in wanted:
            out[key] = x.clone()  # ReLU(inplace=True) further on would overwrite it
        if len(out) == len(wanted):
            break
    return out


def gram(f):
    c = f.shape[1]
    f = f.reshape(c, -1)
    return f @ f.t() / f.shape[1]


def make_loss(seq, mean, std, content, style, content_layer, style_layers, cw=1.0, sw=1.0, tvw=0.0):
    norm = lambda p: (p - mean) / std  # noqa: E731
    wanted = set(style_layers) | {content_layer}
    with torch.no_grad():  # each target pass stops at its own deepest layer
        p = features_at(seq, norm(content), {content_layer})[content_layer] if content is not None else None
        a = {k: gram(v) for k, v in features_at(seq, norm(style), set(style_layers)).items()}

    def loss(pixels):
        x = norm(pixels)
        f = features_at(seq, x, wanted)
        s = sum(((gram(f[k]) - a[k]) ** 2).sum() / (a[k] ** 2).sum() for k in style_layers)  # summed, as the package
        c = ((f[content_layer] - p) ** 2).sum() / (p ** 2).sum() if p is not None else x.new_zeros(())
        tv = ((x[..., 1:, :] - x[..., :-1, :]) ** 2).sum() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).sum()
        return cw * c + sw * s + tvw * tv / x[0].numel(), float(c.detach()), float(s.detach())
    return loss


def run(loss, init, steps, optimizer="adam", lr=0.02):
    pixels = init.detach().clone().contiguous().requires_grad_(True)
    history = []
    if optimizer == "adam":
        opt = torch.optim.Adam([pixels], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            total, c, s = loss(pixels)
            total.backward()
            opt.step()
            with torch.no_grad():
                pixels.clamp_(0, 1)
            history.append((float(total.detach()), c, s))
    else:
        opt = torch.optim.LBFGS([pixels], lr=1.0, max_iter=1, history_size=10)
        for _ in range(steps):
            def closure():
                opt.zero_grad()
                total, c, s = loss(pixels)
                total.backward()
                history.append((float(total.detach()), c, s))
                return total
            opt.step(closure)
            with torch.no_grad():
                pixels.clamp_(0, 1)
    return pixels.detach(), history
