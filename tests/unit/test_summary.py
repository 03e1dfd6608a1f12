from torch import nn

from cnnpipe import models
from cnnpipe.summary import report, summarize

from conftest import run


def fields(summary, kind):
    return [row.rf for row in summary.rows if row.kind == kind]


def test_lenet_receptive_fields_shapes_and_totals():
    model = models.build("lenet", num_classes=10, in_channels=1, image_size=32)
    summary = summarize(model, 1, 32)
    # conv 5x5: 5; pool 2/2: 5+1=6; conv 5x5 at jump 2: 6+4*2=14; pool: 14+1*2=16;
    # flatten 5x5 at jump 4: 16+4*4=32, the whole image.
    assert fields(summary, "Conv2d") == [5, 14]
    assert fields(summary, "MaxPool2d") == [6, 16]
    assert fields(summary, "Linear") == [32, 32, 32]
    assert [row.shape for row in summary.rows if row.kind == "Conv2d"] == [
        (6, 28, 28),
        (16, 10, 10),
    ]
    assert summary.params == 61706
    assert summary.rows[0].macs == 6 * 28 * 28 * 25


def test_vgg11_receptive_fields():
    model = models.build("vgg11", num_classes=1000, in_channels=3, image_size=224)
    summary = summarize(model, 3, 224)
    assert fields(summary, "Conv2d") == [3, 8, 18, 26, 46, 62, 102, 134]
    assert fields(summary, "MaxPool2d") == [4, 10, 30, 70, 150]
    assert summary.macs == 7_609_090_048  # 7.6 G multiply-adds, as the paper's table implies


def test_three_stacked_3x3_convs_see_7x7():
    stack = nn.Sequential(*(nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)))
    assert fields(summarize(stack, 1, 16), "Conv2d") == [3, 5, 7]


def test_residual_branches_keep_the_larger_field():
    # The 1x1 downsample branch sees less than the 3x3 main path; after the add, the
    # block's output sees what the main path sees.
    model = models.build("resnet18", num_classes=10, in_channels=3, image_size=224)
    summary = summarize(model, 3, 224)
    rows = {row.name: row for row in summary.rows}
    assert rows["layer2.0.downsample.0"].rf < rows["layer2.0.conv2"].rf
    assert rows["layer2.1.conv1"].rf == rows["layer2.0.conv2"].rf + 2 * 8


def test_report_says_which_variant_was_built():
    small = models.build("resnet18", num_classes=10, in_channels=1, image_size=32)
    assert "resnet18: small-input variant" in report(small, "resnet18", "small", 1, 32)


def test_cli_summary_prints_the_table(tmp_path):
    result = run(["cnnpipe", "summary", "--model", "vgg11", "--image-size", "32"], tmp_path)
    assert result.stdout.startswith("vgg11: small-input variant")
    assert "parameters: 9,749,770" in result.stdout
    bad = run(["cnnpipe", "summary", "--model", "vgg12"], tmp_path, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: model 'vgg12' is not registered; allowed: lenet")
