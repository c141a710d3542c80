"""Parameter counts of the listed models at their builders' defaults (generated; do not edit).

Written by ``tools/make_model_table.py``; `layerkit models` reads it.
name: (input_shape, num_classes or None, parameters)
"""

PARAMETERS = {
    'airbench94': ((32, 32, 3), 10, 1_973_944),
    'airbench96': ((32, 32, 3), 10, 9_921_848),
    'alphazero-19-256': ((19, 19, 17), None, 22_847_851),
    'alphazero-39-256': ((19, 19, 17), None, 46_481_771),
    'cnn': ((192, 192, 3), 5, 293_233),
    'dense': ((192, 192, 3), 5, 56_756_229),
    'efficientnet-b0': ((224, 224, 3), 1000, 5_330_571),
    'efficientnet-lite0': ((224, 224, 3), 1000, 4_694_024),
    'mobilenetv3-large': ((224, 224, 3), 1000, 3_957_352),
    'resnet-110': ((32, 32, 3), 10, 1_738_618),
    'resnet-164': ((32, 32, 3), 10, 1_727_482),
    'resnet-32': ((32, 32, 3), 10, 468_986),
    'resnet50': ((224, 224, 3), 1000, 25_636_712),
    'revnet-110': ((32, 32, 3), 10, 1_737_386),
    'revnet-164': ((32, 32, 3), 10, 1_773_482),
    'revnet-38': ((32, 32, 3), 10, 467_498),
    'squeezenet': ((192, 192, 3), 5, 119_957),
    'svgg': ((32, 32, 3), 10, 5_354_570),
    'wrn-16-4': ((32, 32, 3), 10, 2_752_506),
    'wrn-16-8': ((32, 32, 3), 10, 10_968_570),
    'wrn-28-10': ((32, 32, 3), 10, 36_497_146),
    'wrn-40-2': ((32, 32, 3), 10, 2_248_954),
    'wrn-40-4': ((32, 32, 3), 10, 8_959_994),
    'xception': ((192, 192, 3), 5, 20_871_725),
}
