"""The contract every task honours, from recipe to served, deployed model.

A task is one class that declares everything about its family of problems, so that the server,
the CLI, the Python API and the deployment code never name a task. :mod:`zero2one.testing`
checks a task against this contract (zero2one's own in ``tests/test_common.py``; a plug-in in
its own tests). :class:`Task` is a small core (:class:`~zero2one.task.core.TaskCore`) and one
class per capability (:mod:`zero2one.task.capabilities`), each with defaults that refuse or do
nothing: a task overrides the core and whichever capabilities it offers. Every public member
of :class:`Task` is in this table, under the class that declares it (a test keeps it so):

=============================  =============================================================
member                         what it is for
=============================  =============================================================
**core** (``TaskCore``)
``name``, ``config_model``     the task's name in recipes; its recipe model (``recipe check``)
``extra``, ``requires``        a missing dependency fails with the ``pip install`` line
``check_requirements``         ... raised before the task trains or loads anything
``load_data``                  read, check, split the data: a :class:`TaskData`
``fit``, ``evaluate``          learn (returns ``self``); held-out metrics
``report``                     plots and tables of the fitted model
``searched``                   a fit's hyperparameter search (:class:`Searched`), recorded
``predict``                    Python callers: the task family's inputs and outputs
``predict_file``               ``zero2one predict MODEL --input FILE``
``save``, ``load``             the model directory (manifest fields; verified load)
``recipe_from``                the saved recipe, validated again on load
``manifest``, ``ref``          set on save and load: the manifest, the reference it came from
**training runs** (``TrainingRuns``)
``resume``, ``run_id``         set by :func:`zero2one.train`: resume from a checkpoint; the run
``checkpoint_dir``             where a fit of this recipe keeps checkpoints
``mark_run``                   leave the run id beside them ...
``interrupted_run``            ... to continue that run after a crash
``clear_checkpoints``          remove them once the fit is done
``data_paths``                 the data's files, whose git and DVC versions a run records
``reproduce_tolerance``        how far a retrain (``zero2one reproduce``) may move a metric
**data-parallel training** (``DataParallel``: ``--nproc``)
``data_parallel``              the task trains data-parallel (:mod:`zero2one.distributed`)
``check_data_parallel``        refuse a ``--nproc`` the recipe cannot make, before any process
**prediction from tables** (``RowPrediction``)
``row_inputs``                 ``predict_rows`` scores a table's rows: ``--engine dask``
``predict_rows``               ... one partition's rows
``check_row_options``          ... its options, checked before any partition runs
**models zero2one did not train** (``Pretrained``)
``from_pretrained``            ``builtin:``, ``.gguf``, a Hugging Face directory, ...
``claims``                     which such references the task understands
``builtin_models``             ``builtin:NAME`` references and ``zero2one doctor``
**conversion** (``Convertible``: :mod:`zero2one.convert`)
``export_formats``             ``zero2one export --format``: a new model, another runtime
``export``                     ... made and checked against this one
``compress_methods``           ``zero2one compress --method``: a smaller model
``compress``                   ... made and checked against this one
``runtime``, ``bench_call``    the conversion report: what runs the model; one timed batch
**serving** (``Serving``)
``serving_adapter``            the object that answers HTTP requests for a loaded model
``routes``                     the routes the task adds to the server
``engines``                    the decoding engines ``zero2one serve --engine`` may pick
``serve_requirements``         what a served model needs beyond the server's own packages
**deployment** (``Deployment``)
``deploy_requirements``        what the deployed image installs
``deploy_files``               what the build context carries beside the model (a base model)
``needs_torch``                the image takes torch from the CPU wheel index
``deploy_resources``           the Kubernetes memory request and limit for a model this size
``serving_engines``            other servers ``zero2one deploy --engine`` renders (vLLM)
``engine_deployment``          ... their files for these models
**MLflow's flavor** (``MLflowModel``: :mod:`zero2one.portable`)
``pyfunc_schema``              the MLmodel's signature and input example
``pyfunc_predict``             ``mlflow.pyfunc``'s predict: a table in, a table out
``pipeline_tag``               the Hugging Face pipeline tag in the model card
=============================  =============================================================
"""


from __future__ import annotations

from zero2one.task.capabilities import (
    Capability,
    Convertible,
    DataParallel,
    Deployment,
    MLflowModel,
    Pretrained,
    RowPrediction,
    Serving,
    TrainingRuns,
)
from zero2one.task.core import TaskCore
from zero2one.task.types import (
    PATH_PREFIXES,
    BuiltinModel,
    DeployFiles,
    EngineDeployment,
    PyfuncSchema,
    Searched,
    TaskData,
    check_options,
    pyfunc_columns,
)


class Task(TaskCore, TrainingRuns, DataParallel, RowPrediction, Pretrained, Convertible,
           Serving, Deployment, MLflowModel):
    """Base class of all tasks: the core and every capability (see the table above)."""


CAPABILITIES = (TrainingRuns, DataParallel, RowPrediction, Pretrained, Convertible, Serving,
                Deployment, MLflowModel)

__all__ = [
    "CAPABILITIES", "PATH_PREFIXES", "BuiltinModel", "Capability", "Convertible",
    "DataParallel", "DeployFiles", "Deployment", "EngineDeployment", "MLflowModel", "Pretrained",
    "PyfuncSchema", "RowPrediction", "Searched", "Serving", "Task", "TaskCore", "TaskData",
    "TrainingRuns", "check_options", "pyfunc_columns",
]
