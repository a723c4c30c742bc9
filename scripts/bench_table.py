"""scripts/bench.py's Markdown table: seconds per iteration and whole fits, and the ratios
(how many times faster spark-em is than MLlib and scikit-learn)."""

from __future__ import annotations


def ratio(a, b):
    return a / b if a and b and b > 0 else float("nan")


def table(results: list[dict], iters: int) -> str:
    head = (
        "| workload | MLlib s/iter | spark-em s/iter | × MLlib | sklearn s/iter | × sklearn "
        f"| MLlib fit(1) | spark-em fit(1) | × | MLlib fit({iters}) | spark-em fit({iters}) | × |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    fmt = lambda x: "—" if x is None or x != x else f"{x:.2f}"  # noqa: E731
    fmtr = lambda x: "—" if x is None or x != x else f"{x:.1f}×"  # noqa: E731
    for r in results:
        ml = r.get("mllib", {})
        keys = [k for k in r if k.startswith("spark_em_")]
        for key in keys:
            cov, _, store = key[len("spark_em_") :].partition("@")
            ours = r[key]
            # against scikit-learn in the same dtype where it ran in it
            sk = r.get(f"sklearn_{cov}", {})
            if "float32" in store:
                sk = r.get(f"sklearn_{cov}_float32", sk)
            name = f"N={r['n']:,} d={r['d']} K={r['k']} {cov}" + (f" ({store})" if store else "")
            if r.get("separation", 6.0) != 6.0:
                name += f" (sep {r['separation']:g})"
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        fmt(ml.get("per_iter_s")),
                        fmt(ours.get("per_iter_s")),
                        fmtr(ratio(ml.get("per_iter_s"), ours.get("per_iter_s"))),
                        fmt(sk.get("per_iter_s")),
                        fmtr(ratio(sk.get("per_iter_s"), ours.get("per_iter_s"))),
                        fmt(ml.get("fit1_s")),
                        fmt(ours.get("fit1_s")),
                        fmtr(ratio(ml.get("fit1_s"), ours.get("fit1_s"))),
                        fmt(ml.get("fit_s")),
                        fmt(ours.get("fit_s")),
                        fmtr(ratio(ml.get("fit_s"), ours.get("fit_s"))),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)
