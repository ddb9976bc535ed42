"""What difference can a planned study detect, and how well does each interval method cover on its design?

    python manage.py simulate_power --prompts 200 --raters-per-category 25
    python manage.py simulate_power --prompts 200 --raters 10 --design few_raters --effect 0.05
    python manage.py simulate_power --prompts 200 --raters-per-category 25 --coverage --R 2000

Prints the minimum detectable difference in s at the target power for the default interval (its standard error is
the spread of s over R simulated studies with no difference), the simulated power at ``--effect`` when given, and
with ``--coverage`` the coverage of each interval method over R simulated studies of the scenario (true s set by
``--coverage-score``). Seeded: the same options print the same figures.
"""

import time
from dataclasses import replace

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from drawbench.results import intervals, simulate
from drawbench.results.intervals import core as interval_core

COVERAGE_METHODS = (
    "two_way_cluster_t",
    "two_way_cluster_normal",
    "prompt_bootstrap",
    "prompt_bootstrap_bca",
    "two_way_bootstrap",
    "wilson",
)
DESIGN_HELP = (
    "per_category: raters per category, each rating every prompt of its category (the paper's); few_raters: a pool "
    "of raters each rating every prompt; random: a pool of raters, --ratings-per-prompt of them per prompt."
)


class Command(BaseCommand):
    help = (
        "Minimum detectable difference in s for a study design and, with --coverage, each interval method's coverage."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompts", type=int, default=200, help="Prompts (DrawBench's categories, scaled).")
        parser.add_argument("--design", choices=["per_category", "few_raters", "random"], help=DESIGN_HELP)
        parser.add_argument("--raters-per-category", type=int, help="Raters per category (per_category design).")
        parser.add_argument("--raters", type=int, help="Raters in the pool (few_raters and random designs).")
        parser.add_argument("--ratings-per-prompt", type=int, default=5, help="Raters per prompt (random design).")
        parser.add_argument("--tie-rate", type=float, default=0.3)
        parser.add_argument("--prompt-sd", type=float, default=1.0, help="Prompt effect sd (logit scale).")
        parser.add_argument("--rater-sd", type=float, default=0.5, help="Rater effect sd (logit scale).")
        parser.add_argument("--left-bias", type=float, default=0.2, help="Left-side bias (logit scale).")
        parser.add_argument("--level", type=float, default=interval_core.DEFAULT_LEVEL)
        parser.add_argument("--power", type=float, default=0.8, help="Target power of the detectable difference.")
        parser.add_argument("--effect", type=float, help="Also simulate the power at this difference in s from ½.")
        parser.add_argument("--R", type=int, default=1000, help="Simulated studies (per figure).")
        parser.add_argument("--seed", type=int, default=simulate.SIMULATION_SEED)
        parser.add_argument("--coverage", action="store_true", help="Also measure each interval method's coverage.")
        parser.add_argument(
            "--methods", nargs="+", choices=intervals.METHODS, default=list(COVERAGE_METHODS), metavar="METHOD"
        )
        parser.add_argument("--B", type=int, default=interval_core.DEFAULT_B, help="Bootstrap resamples (coverage).")
        parser.add_argument(
            "--coverage-score", type=float, default=0.6, help="True s of the coverage scenario (default 0.6)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options) -> None:
        design, raters = self._design(options)
        for name, low, high in (("--level", 0, 1), ("--power", 0, 1), ("--tie-rate", 0, 0.95)):
            value = options[name[2:].replace("-", "_")]
            if not low < value < high and not (name == "--tie-rate" and value == 0):
                raise CommandError(f"{name} must lie strictly between {low} and {high}, got {value}.")
        if options["R"] < 2:
            raise CommandError(f"--R must be at least 2, got {options['R']}.")
        design_options = {
            "design": design,
            "ratings_per_prompt": options["ratings_per_prompt"],
            "prompt_sd": options["prompt_sd"],
            "rater_sd": options["rater_sd"],
            "tie_rate": options["tie_rate"],
            "left_bias": options["left_bias"],
        }
        try:
            scenario = simulate.power_scenario(options["prompts"], raters, **design_options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        R = options["R"]
        steps = R * (2 if options["effect"] is not None else 1)
        self.stdout.write(self._describe(scenario, raters, R, options))

        start = time.perf_counter()
        with self._progress(steps, "power", options) as bar:
            result = simulate.power(
                options["prompts"],
                raters,
                options["effect"],
                level=options["level"],
                target_power=options["power"],
                R=R,
                seed=options["seed"],
                progress=bar.update,
                **design_options,
            )
        self.stdout.write(
            f"default interval ({intervals.DEFAULT_METHOD}): SE of s {100 * result.se:.2f} points, df {result.df:.1f}"
        )
        mdd = result.min_detectable_difference
        self.stdout.write(
            f"minimum detectable difference at {100 * options['power']:.0f}% power, "
            f"{100 * options['level']:.0f}% two-sided: {100 * mdd:.2f} points "
            f"(s = {50 + 100 * mdd:.1f}% or {50 - 100 * mdd:.1f}%)"
        )
        if result.power is not None:
            self.stdout.write(
                f"simulated power at a difference of {100 * options['effect']:.2f} points: {100 * result.power:.1f}%"
            )
        self.stdout.write(f"({time.perf_counter() - start:.1f} s)")

        if options["coverage"]:
            self._coverage(scenario, R, options)

    def _design(self, options: dict) -> tuple[str, int]:
        per_category, pool = options["raters_per_category"], options["raters"]
        design = options["design"] or ("per_category" if pool is None else "few_raters")
        if design == "per_category":
            if pool is not None:
                raise CommandError(
                    "--raters is the pool size of the few_raters and random designs; use --raters-per-category."
                )
            return design, 25 if per_category is None else per_category
        if per_category is not None:
            raise CommandError(f"--raters-per-category applies to the per_category design, not {design}; use --raters.")
        if pool is None:
            raise CommandError(f"The {design} design needs --raters (the pool size).")
        if design == "random" and options["ratings_per_prompt"] > pool:
            raise CommandError(
                f"--ratings-per-prompt {options['ratings_per_prompt']} exceeds the pool of {pool} raters."
            )
        return design, pool

    def _describe(self, scenario: simulate.Scenario, raters: int, R: int, options: dict) -> str:
        if scenario.design == "per_category":
            total = raters * len(scenario.categories)
            who = f"{raters} raters per category ({total} in all), each rating every prompt of it"
        elif scenario.design == "few_raters":
            who = f"a pool of {raters} raters, each rating every prompt"
        else:
            who = f"a pool of {raters} raters, {scenario.ratings_per_prompt} per prompt"
        return (
            f"design: {options['prompts']} prompts in {len(scenario.categories)} categories; {who}; "
            f"{simulate.judgments_per_study(scenario):,} judgments per question\n"
            f"model: prompt sd {options['prompt_sd']}, rater sd {options['rater_sd']}, tie rate {options['tie_rate']}, "
            f"left bias {options['left_bias']} (logit scale); R = {R:,} simulated studies, seed {options['seed']}"
        )

    def _progress(self, total: int, description: str, options: dict) -> tqdm:
        return tqdm(total=total, desc=description, unit="study", disable=options["no_progress"], leave=False)

    def _coverage(self, scenario: simulate.Scenario, R: int, options: dict) -> None:
        score = options["coverage_score"]
        if not 0 < score < 1:
            raise CommandError(f"--coverage-score must lie strictly between 0 and 1, got {score}.")
        named = replace(scenario, name=f"{scenario.name}_coverage")
        target = replace(named, effect=simulate.effect_for_score(named, score))
        methods = list(dict.fromkeys(options["methods"]))
        self.stdout.write(
            f"\ncoverage of nominal {100 * options['level']:.0f}% intervals for s (true s = {score}), R = {R:,} "
            f"studies, B = {options['B']:,} for the bootstraps, seed {options['seed']}:"
        )
        self.stdout.write(
            f"  {'method':24s} {'coverage':>9s} {'± MC se':>8s} {'mean width':>11s} {'worst category':>15s}"
        )
        lines = []
        with self._progress(R * len(methods), "coverage", options) as bar:
            for method in methods:
                bar.set_postfix_str(method)
                result = simulate.coverage(
                    method, target, R, options["seed"], level=options["level"], B=options["B"], progress=bar.update
                )
                lines.append(
                    f"  {method:24s} {result.coverage:9.3f} {result.mc_se:8.3f} "
                    f"{100 * result.mean_width:10.2f}p {min(result.category_coverage):15.3f}"
                )
        self.stdout.write("\n".join(lines))
