"""`paddy kernels render|push|status|output`, `paddy submit` and `paddy submissions`: Kaggle through its client."""

from pathlib import Path

from paddy.core.errors import ConfigError
from paddy.data.competition import COMPETITION  # constants only: cheap enough for `paddy --help`


def register(subparsers):
    """Add the kernels, submit and submissions subcommands."""
    _register_kernels(subparsers)
    _register_submissions(subparsers)


def _register_kernels(subparsers):
    kernels = subparsers.add_parser("kernels", help="thin Kaggle kernels: render from a plan, push, follow, fetch")
    actions = kernels.add_subparsers(dest="action", metavar="ACTION", required=True)

    render = actions.add_parser("render", help="write kernel folders (metadata + short script) from a plan")
    render.add_argument("plan", help="plan TOML file or built-in plan name (e.g. tiny)")
    render.add_argument("--user", required=True, help="your Kaggle username (owner of the kernels)")
    render.add_argument("--competition", default=COMPETITION, help="competition slug (default: %(default)s)")
    render.add_argument("--out", default="kernels", help="folder for the kernel folders (default: %(default)s)")
    render.add_argument("--no-gpu", dest="gpu", action="store_false",
                        help="run the probe and members without a GPU (the ensemble never has one)")
    render.add_argument("--accelerator", default="NvidiaTeslaT4",
                        help="Kaggle machine_shape of the GPU kernels (default: %(default)s, 'GPU T4 x2'); retired "
                             "shapes (NvidiaTeslaP100) are refused")
    render.add_argument("--lanes", type=int, default=None,
                        help="members each training kernel trains at once, one per GPU (default: the accelerator's "
                             "GPU count: 2 on NvidiaTeslaT4; 1 with --no-gpu, a kernel per member)")
    render.add_argument("--internet", choices=("auto", "on", "off"), default="auto",
                        help="kernels' internet: auto (default) = on only for members that download pretrained "
                             "weights; the kit itself always installs offline")
    render.add_argument("--cache", metavar="DIR",
                        help="an array cache (paddy resize --format array): the kernels read it as a private "
                             "dataset instead of decoding the competition's JPEGs (push it with --cache too)")
    render.set_defaults(func=run_render)

    push = actions.add_parser("push", help="send the kit dataset, then kernel folders, through the Kaggle API")
    push.add_argument("dirs", nargs="*", help="kernel folders to push")
    push.add_argument("--all", action="store_true", help="push every kernel folder under --kernels")
    push.add_argument("--kernels", default="kernels", help="where --all looks (default: %(default)s)")
    push.add_argument("--with-deps", action="store_true",
                      help="also pack the fastai/timm wheels the kit was tested with into the kit dataset")
    push.add_argument("--stage", default=".whl/kit", help="local staging folder of the kit dataset (%(default)s)")
    push.add_argument("--cache", metavar="DIR",
                      help="also send this array cache as a private dataset (the kernels must be rendered with it); "
                           "skipped when unchanged since the last push")
    push.add_argument("--yes", action="store_true",
                      help="push --all even when the estimated GPU hours exceed half the weekly quota left")
    push.set_defaults(func=run_push)

    quota = actions.add_parser("quota", help="your weekly Kaggle GPU quota: used, remaining, when it refreshes")
    quota.set_defaults(func=run_quota)

    status = actions.add_parser("status", help="the latest run's status of a kernel")
    status.add_argument("slug", help="USER/KERNEL-SLUG")
    status.set_defaults(func=run_status)

    output = actions.add_parser("output", help="download a kernel's outputs (e.g. a member's run folder)")
    output.add_argument("slug", help="USER/KERNEL-SLUG")
    output.add_argument("--out", required=True, help="new or empty folder for the files")
    output.set_defaults(func=run_output)


def _register_submissions(subparsers):
    submit = subparsers.add_parser("submit", help="check a submission CSV, send it to Kaggle, log it")
    submit.add_argument("csv", help="the submission CSV")
    submit.add_argument("-m", "--message", required=True, help="what this submission tries")
    submit.add_argument("--competition", default=COMPETITION, help="competition slug (default: %(default)s; "
                        "another competition needs --data)")
    submit.add_argument("--data", help="competition folder whose sample_submission.csv (ids) and train_images/ "
                        "folders (labels, for another competition) to check against; default: Paddy Doctor's")
    submit.add_argument("--log", default=None, help="submissions log (default: log.csv beside the CSV, where "
                        "paddy ensemble logged it)")
    submit.set_defaults(func=run_submit)

    listing = subparsers.add_parser("submissions", help="list your Kaggle submissions with their CV; fill the "
                                    "log's scores; plot public score vs CV (3+ scored)")
    listing.add_argument("--competition", default=COMPETITION, help="competition slug (default: %(default)s)")
    listing.add_argument("--log", default="submissions/log.csv", help="submissions log (default: %(default)s)")
    listing.set_defaults(func=run_submissions)


def run_render(args):
    """paddy kernels render."""
    from paddy.core.plan import load_plan
    from paddy.kaggle.kernels import render_kernels

    folders, removed = render_kernels(load_plan(args.plan), args.user, args.competition, out=args.out,
                                      gpu=args.gpu, internet=args.internet, cache=args.cache,
                                      accelerator=args.accelerator, lanes=args.lanes)
    for folder in folders:
        print(folder)
    for folder in removed:
        print(f"removed {folder} (no longer in the plan)")


def run_push(args):
    """paddy kernels push."""
    from paddy.kaggle.client import push_kernels
    from paddy.kaggle.kernels import kernel_folders

    if bool(args.dirs) == args.all:
        raise ConfigError("give kernel folders to push, or --all (not both)")
    folders = kernel_folders(args.kernels) if args.all else args.dirs
    quota = (lambda api: check_quota(folders, args.yes, api)) if args.all else None
    result = push_kernels(folders, stage=args.stage, with_deps=args.with_deps, cache=args.cache, before_send=quota)
    dataset = result["dataset"]
    print(f"dataset {dataset['ref']}: {dataset['action']} (wheels {dataset['digest']})")
    if "cache" in result:
        cache = result["cache"]
        print(f"dataset {cache['ref']}: {cache['action']} (array cache {cache['digest']})")
    for kernel in result["kernels"]:
        print(f"kernel {kernel['ref']}: pushed version {kernel['version']} {kernel['url']}")
    for kernel in result["waiting"]:
        print(f"kernel {kernel['ref']}: not pushed, waiting for {', '.join(kernel['pending'])}; push it again "
              "when they are complete (paddy kernels status)")


def check_quota(folders, yes, api=None):
    """Print the kernels' estimated GPU hours beside the quota left; ConfigError past half of it without --yes."""
    from paddy.kaggle.client import gpu_quota
    from paddy.kaggle.kernels import read_kernel_folder
    from paddy.kaggle.quota import kernel_estimates, needs_confirmation

    estimates = kernel_estimates(folders, read_kernel_folder)
    for estimate in estimates:
        runs = ", ".join(f"{name} {hours:.1f} h" for name, hours in estimate.runs)
        print(f"{Path(estimate.folder).name}: about {estimate.hours:.1f} GPU h ({runs})")
    total = sum(e.hours for e in estimates)
    quota = gpu_quota(api)
    print(f"estimated GPU hours: {total:.1f} of {quota['remaining_h']:.1f} h left this week "
          f"({quota['used_h']:.1f} of {quota['total_h']:.1f} h used; refreshes {quota['refresh_at']})")
    if needs_confirmation(total, quota["remaining_h"]) and not yes:
        raise ConfigError(f"these kernels would use about {total:.1f} GPU hours, more than half of the "
                          f"{quota['remaining_h']:.1f} h left this week; push again with --yes to go ahead")


def run_quota(args):
    """paddy kernels quota."""
    from paddy.kaggle.client import gpu_quota

    quota = gpu_quota()
    print(f"GPU quota: {quota['remaining_h']:.2f} h left of {quota['total_h']:.2f} h this week "
          f"({quota['used_h']:.2f} h used); refreshes {quota['refresh_at']}")


def run_status(args):
    """paddy kernels status."""
    from paddy.kaggle.client import kernel_status

    status = kernel_status(args.slug)
    failure = f": {status['failure_message']}" if status["failure_message"] else ""
    print(f"{status['ref']}: {status['status']}{failure}")


def run_output(args):
    """paddy kernels output."""
    from paddy.kaggle.client import kernel_output

    for path in kernel_output(args.slug, args.out):
        print(path)


def run_submit(args):
    """paddy submit."""
    from paddy.kaggle.client import submit

    result = submit(args.csv, args.message, args.competition, data=args.data, log=args.log)
    print(f"submitted {args.csv} to {args.competition} (ref {result['ref']}): {result['message']}; logged in "
          f"{result['log']}")


def run_submissions(args):
    """paddy submissions."""
    from paddy.kaggle.client import sync_submissions

    synced = sync_submissions(args.competition, log=args.log)
    print(f"{'ref':>10}  {'date':25}  {'status':8}  {'public':>8}  {'CV':>8}  {'CV std':>7}  file: description")
    for row in synced["submissions"]:
        error = f" [{row['error']}]" if row["error"] else ""  # why Kaggle could not score it
        print(f"{row['ref']:>10}  {row['date']:25}  {row['status']:8}  {row['public_score']:>8}  "
              f"{row['cv_accuracy']:>8}  {row['cv_std']:>7}  {row['file']}: {row['description']}{error}")
    if synced["plot"]:
        print(f"public score vs CV: {synced['plot']}")
