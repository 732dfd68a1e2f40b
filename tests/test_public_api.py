import zero2one


def test_public_names_are_pinned() -> None:
    assert sorted(zero2one.__all__) == sorted([
        "ArtifactError", "CompressOptions", "ConversionError", "DataError", "IntegrityError",
        "ModelRefError", "RecipeError", "SchemaError", "TrainResult", "UserError",
        "Zero2OneError", "__version__", "add_data", "compress", "diff_runs", "export", "load",
        "load_recipe", "predict_file", "predict_partitions", "register_task", "reproduce",
        "train",
    ])
    for name in zero2one.__all__:
        assert getattr(zero2one, name) is not None


def test_user_errors_share_a_base() -> None:
    for name in ("ArtifactError", "ConversionError", "DataError", "IntegrityError",
                 "ModelRefError", "RecipeError", "SchemaError"):
        assert issubclass(getattr(zero2one, name), zero2one.UserError)
    assert issubclass(zero2one.UserError, zero2one.Zero2OneError)
