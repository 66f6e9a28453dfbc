"""cnnlab: image classification with convolutional networks, from k-NN to EfficientNet.

import cnnlab
model = cnnlab.create_model("resnet20", num_classes=10, in_chans=1)
cnnlab.list_models("resnet*")
model = cnnlab.load_run("runs/resnet20-mnist5k-...")
"""

from .errors import CnnlabError
from .models import create_model, list_models
from .rundir import load_run

__version__ = "0.1.0"
__all__ = ["CnnlabError", "__version__", "create_model", "list_models", "load_run"]
