"""Outputs of an A/B run: a one-screen text table, ``report.png`` and the output directory.

:func:`write_ab` writes everything into a temporary directory that replaces
``out`` only when all files are written, so a failure leaves nothing behind.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from dwellrank_logs.io import atomic_dir, write_json, write_parquet
from simulate.ab import ARMS, ABResult
from simulate.ab.logged_config import LoggedABConfig

__all__ = ["format_ab_table", "plot_report", "write_ab"]

#: Files of an A/B output directory.
_FILES = ("members.parquet", "effects.parquet", "daily.parquet", "report.json", "report.png")


def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}" if a >= 0.001 or v == 0 else f"{v:.2e}"


def _pct(v: Any) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:+.1f}%"


def _p(v: Any) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return "<1e-4" if v < 1e-4 else f"{v:.4f}"


def _period(result: ABResult) -> str:
    """The days of the test: simulated (days, pre-period, seed) or logged (dates, outside members)."""
    cfg = result.config
    if isinstance(cfg, LoggedABConfig):
        p = result.summary["period"]
        return (
            f"{p['days']} days from {p['experiment_start']} + {p['pre_days']} pre-period days from {p['first_day']}, "
            f"{result.summary['members_outside']:,} members outside the experiment"
        )
    return f"{cfg.world.n_days} days + {cfg.pre_days} pre-period days, seed {cfg.seed}"


def format_ab_table(result: ABResult) -> str:
    """The A/B result as a one-screen text table (metrics x arms, effect, CI, p)."""
    cfg = result.config
    conf = round(100 * (1 - cfg.alpha))
    cuped = cfg.pre_days > 0
    srm = result.srm
    lines = [
        f"A/B: control = {result.rankers[ARMS[0]]}  vs  treatment = {result.rankers[ARMS[1]]}",
        f"members {srm['n_control']:,} control / {srm['n_treatment']:,} treatment (split {cfg.split}), {_period(result)}",
        f"SRM chi-square p = {srm['p_value']:.3f}{'  ** SAMPLE RATIO MISMATCH **' if srm['mismatch'] else ' (ok)'}; "
        f"MDE {result.power['mde_sd']:.3f} sd at alpha {cfg.alpha}, power {cfg.power}"
        + ("; effects CUPED-adjusted on the pre-period" if cuped else ""),
        "",
        f"{'metric':<27}{'control':>10}{'treatment':>11}{'effect':>9}  {f'{conf}% CI':<17}{'p':>8}{'MDE':>8}  ",
    ]
    for row in result.effects.iter_rows(named=True):
        sig = row["p_value"] is not None and math.isfinite(row["p_value"]) and row["p_value"] < cfg.alpha
        good = sig and ((row["diff"] > 0) == (row["better"] == "higher"))
        mark = ("+" if good else "-") if sig else " "
        ci = f"[{_pct(row['rel_ci_low'])}, {_pct(row['rel_ci_high'])}]"
        lines.append(
            f"{row['metric']:<27}{_num(row['mean_control']):>10}{_num(row['mean_treatment']):>11}{_pct(row['rel_diff']):>9}  "
            f"{ci:<17}{_p(row['p_value']):>8}{_pct(row['rel_mde']).lstrip('+'):>8} {mark}"
        )
    lines.append("effect, CI and MDE relative to the control mean; + / - : significant change in the better / worse direction")
    if result.ope:
        ope = result.ope
        lines += [
            "",
            f"off-policy evaluation of the top slot ({ope['reward']} rate), {ope['n_requests']:,} requests logged by "
            f"{ope['logging']['ranker']} (observed {ope['logging']['observed_reward']:.4f}):",
            f"{'target':<12}{'truth':>9}{'IPS':>22}{'SNIPS':>22}{'DR':>22}{'ESS':>8}",
        ]
        for name, t in ope["targets"].items():
            cells = []
            for est in ("ips", "snips", "dr"):
                e = t["estimates"][est]
                half = (e["ci_high"] - e["ci_low"]) / 2
                cells.append(f"{_num(e['value'])} ±{_num(half, 3)}{'' if e['covers'] else '!'}".rjust(22))
            lines.append(f"{name:<12}{t['truth']:>9.4f}{''.join(cells)}{t['ess']:>8.0f}")
        lines.append(
            f"± : half-width of the {round(100 * (1 - cfg.alpha))}% interval; ! : interval misses the simulator's truth; "
            "ESS: effective sample size of the weights"
        )
    if result.ope and "feed" in result.ope:
        lines += _feed_lines(result.ope["feed"], result.ope["reward"], cfg.alpha)
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _feed_lines(feed: dict[str, Any], reward: str, alpha: float) -> list[str]:
    """The whole-feed OPE rows: one per slate estimator, value, normal half-width and bootstrap interval per target, against the truth."""
    names = list(feed["targets"])
    width = 38
    lines = [
        "",
        f"off-policy evaluation of the feed ({reward} count over the first {feed['k']} positions), {feed['n_requests']:,} requests "
        f"(logged feeds: observed {feed['logging']['observed_reward']:.4f}, truth {feed['logging']['truth_logged_feeds']:.4f}):",
        f"{'estimator':<29}" + "".join(f"{n:>{width}}" for n in names),
        f"{'truth':<29}" + "".join(f"{feed['targets'][n]['truth']:>{width}.4f}" for n in names),
    ]
    for est in feed["targets"][names[0]]["estimates"]:
        cells = []
        for n in names:
            e = feed["targets"][n]["estimates"][est]
            if e["value"] is None or e["ci_low"] is None:
                cells.append("no support".rjust(width))
                continue
            half = (e["ci_high"] - e["ci_low"]) / 2
            cell = f"{_num(e['value'])} ±{_num(half, 3)}{'' if e['covers'] else '!'}"
            if "boot_ci_low" in e:
                cell += f" [{_num(e['boot_ci_low'])}, {_num(e['boot_ci_high'])}]{'' if e['boot_covers'] else '!'}"
            cells.append(cell.rjust(width))
        lines.append(f"{est:<29}" + "".join(cells))
    level = round(100 * (1 - alpha))
    boot = feed.get("bootstrap")
    lines.append(
        f"± : half-width of the normal {level}% interval"
        + (f"; [ ] : {level}% percentile bootstrap over requests ({boot['n_boot']:,} resamples)" if boot else "")
        + "; ! : misses the truth; no support: the target's feed never matches the log"
    )
    return lines


def _plot_feed(ax: Any, feed: dict[str, Any], alpha: float) -> None:
    """Every slate estimator's value with its normal (thick) and bootstrap (thin, beside) interval per target, and the truth (dashed)."""
    names = list(feed["targets"])
    ests = list(feed["targets"][names[0]]["estimates"])
    width = 0.8 / len(names)
    for j, (n, color) in enumerate(zip(names, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False)):
        t = feed["targets"][n]
        for i, est in enumerate(ests):
            e = t["estimates"][est]
            x = i + (j - (len(names) - 1) / 2) * width
            if e["value"] is None or e["ci_low"] is None:
                continue
            ax.plot([x, x], [e["ci_low"], e["ci_high"]], color=color, lw=2)
            if e.get("boot_ci_low") is not None:
                xb = x + width / 4
                ax.plot(
                    [xb, xb],
                    [e["boot_ci_low"], e["boot_ci_high"]],
                    color=color,
                    lw=1,
                    alpha=0.6,
                    label=f"{n}: bootstrap" if i == 0 else None,
                )
            ax.plot(x, e["value"], "o", color=color, label=n if i == 0 else None)
        ax.axhline(t["truth"], color=color, ls="--", lw=1, label=f"{n}: truth")
    ax.set_xticks(range(len(ests)), ests, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"expected count over the first {feed['k']} positions")
    level = round(100 * (1 - alpha))
    ax.set_title(
        f"off-policy evaluation of the feed: estimates with normal (thick) and bootstrap (thin) {level}% intervals vs the simulator's truth"
    )
    ax.legend(fontsize=8, ncol=3 * len(names))


def plot_report(result: ABResult, path: str | os.PathLike[str]) -> None:
    """``report.png``: relative effects with intervals, daily trajectories per arm, and the whole-feed OPE when run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eff = result.effects
    feed = result.ope.get("feed") if result.ope else None
    if feed is None:
        fig = plt.figure(figsize=(13, 8), constrained_layout=True)
        grid = fig.add_gridspec(3, 2, width_ratios=[1.1, 1])
    else:  # one more row below, for the whole-feed OPE
        fig = plt.figure(figsize=(13, 12), constrained_layout=True)
        grid = fig.add_gridspec(4, 2, width_ratios=[1.1, 1], height_ratios=[1, 1, 1, 1.6])
        _plot_feed(fig.add_subplot(grid[3, :]), feed, result.config.alpha)
    ax = fig.add_subplot(grid[:3, 0])
    names = eff["metric"].to_list()[::-1]
    rel = [100 * (v if v is not None and math.isfinite(v) else math.nan) for v in eff["rel_diff"].to_list()[::-1]]
    lo = [100 * (v if v is not None and math.isfinite(v) else math.nan) for v in eff["rel_ci_low"].to_list()[::-1]]
    hi = [100 * (v if v is not None and math.isfinite(v) else math.nan) for v in eff["rel_ci_high"].to_list()[::-1]]
    pv = eff["p_value"].to_list()[::-1]
    y = list(range(len(names)))
    colors = ["tab:blue" if (p is not None and math.isfinite(p) and p < result.config.alpha) else "tab:gray" for p in pv]
    for yi, r, a, b, c in zip(y, rel, lo, hi, colors, strict=True):
        ax.plot([a, b], [yi, yi], color=c, lw=2)
        ax.plot(r, yi, "o", color=c)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"treatment vs control, % of control mean ({round(100 * (1 - result.config.alpha))}% CI)")
    ax.set_title("effects (blue: significant)")
    daily = result.daily
    pre = result.config.pre_days
    for i, (col, label) in enumerate(
        (("skip_rate", "skip rate"), ("click_rate", "click rate"), ("sessions_per_member", "sessions per member"))
    ):
        axd = fig.add_subplot(grid[i, 1])
        for arm in ARMS:
            d = daily.filter(daily["arm"] == arm)
            axd.plot(d["day"].to_numpy(), d[col].to_numpy(), label=f"{arm}: {result.rankers[arm]}")
        if pre:
            axd.axvline(pre - 0.5, color="k", ls=":", lw=0.8)
        axd.set_ylabel(label)
        if i == 0:
            axd.set_title("daily, per arm" + (" (dotted: end of pre-period)" if pre else ""))
            axd.legend(fontsize=8)
    axd.set_xlabel("simulated day")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_ab(result: ABResult, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``members.parquet`` (per-member aggregates), ``effects.parquet``, ``daily.parquet``,
    ``report.json``, ``report.png`` and ``report.txt`` atomically into ``out``.

    Raises
    ------
    OutputExistsError
        ``out`` is a non-empty directory and ``overwrite`` is false, or cannot be written.
    """
    target = Path(out)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        write_parquet(result.members, tmp / "members.parquet")
        write_parquet(result.effects, tmp / "effects.parquet")
        write_parquet(result.daily, tmp / "daily.parquet")
        write_json(tmp / "report.json", result.to_dict())
        plot_report(result, tmp / "report.png")
        (tmp / "report.txt").write_text(format_ab_table(result) + "\n")
    return target
