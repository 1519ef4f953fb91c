"""Names from `torch` the rules need, kept static so linting never imports torch.

A test checks these sets against the installed torch, so they cannot silently drift.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# torch.nn classes whose instances hold parameters, buffers, or behave differently in train and
# eval mode: creating one in `forward` is a bug (untrained weights, dropout that ignores eval()).
STATEFUL_LAYERS: frozenset[str] = _words(
    """
    AdaptiveLogSoftmaxWithLoss AlphaDropout BatchNorm1d BatchNorm2d BatchNorm3d Bilinear
    Container Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d
    CrossMapLRN2d DataParallel Dropout Dropout1d Dropout2d Dropout3d Embedding EmbeddingBag
    FeatureAlphaDropout GRU GRUCell GroupNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d LSTM
    LSTMCell LayerNorm LazyBatchNorm1d LazyBatchNorm2d LazyBatchNorm3d LazyConv1d LazyConv2d
    LazyConv3d LazyConvTranspose1d LazyConvTranspose2d LazyConvTranspose3d LazyInstanceNorm1d
    LazyInstanceNorm2d LazyInstanceNorm3d LazyLinear Linear LocalResponseNorm ModuleDict
    ModuleList MultiheadAttention PReLU ParameterDict ParameterList RMSNorm RNN RNNBase RNNCell
    RNNCellBase RReLU Sequential SyncBatchNorm Transformer TransformerDecoder
    TransformerDecoderLayer TransformerEncoder TransformerEncoderLayer
    """
)

# torch.nn classes with no state and no train/eval difference: creating one in `forward` is
# wasteful, not wrong, so the rules leave them alone (low false positives first).
STATELESS_LAYERS: frozenset[str] = _words(
    """
    AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d
    AdaptiveMaxPool3d AvgPool1d AvgPool2d AvgPool3d BCELoss BCEWithLogitsLoss CELU CTCLoss
    ChannelShuffle CircularPad1d CircularPad2d CircularPad3d ConstantPad1d ConstantPad2d
    ConstantPad3d CosineEmbeddingLoss CosineSimilarity CrossEntropyLoss ELU Flatten Fold
    FractionalMaxPool2d FractionalMaxPool3d GELU GLU GaussianNLLLoss Hardshrink Hardsigmoid
    Hardswish Hardtanh HingeEmbeddingLoss HuberLoss Identity KLDivLoss L1Loss LPPool1d LPPool2d
    LPPool3d LeakyReLU LinearCrossEntropyLoss LogSigmoid LogSoftmax MSELoss MarginRankingLoss
    MaxPool1d MaxPool2d MaxPool3d MaxUnpool1d MaxUnpool2d MaxUnpool3d Mish Module
    MultiLabelMarginLoss MultiLabelSoftMarginLoss MultiMarginLoss NLLLoss NLLLoss2d
    PairwiseDistance PixelShuffle PixelUnshuffle PoissonNLLLoss ReLU ReLU6 ReflectionPad1d
    ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d ReplicationPad3d SELU SiLU
    Sigmoid SmoothL1Loss SoftMarginLoss Softmax Softmax2d Softmin Softplus Softshrink Softsign
    Tanh Tanhshrink Threshold TripletMarginLoss TripletMarginWithDistanceLoss Unflatten Unfold
    Upsample UpsamplingBilinear2d UpsamplingNearest2d ZeroPad1d ZeroPad2d ZeroPad3d
    """
)

ALL_LAYERS: frozenset[str] = STATEFUL_LAYERS | STATELESS_LAYERS

# Layers whose call returns a tuple (or needs care), so their output is not "a tensor".
TUPLE_OUTPUT_LAYERS: frozenset[str] = _words(
    """
    AdaptiveLogSoftmaxWithLoss AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d Container
    DataParallel FractionalMaxPool2d FractionalMaxPool3d GRU LSTM LSTMCell MaxPool1d MaxPool2d
    MaxPool3d Module ModuleDict ModuleList MultiheadAttention ParameterDict ParameterList RNN
    RNNBase RNNCellBase Sequential
    """
)

# torch.<name>(...) calls that build a tensor from nothing: without `device=` they land on the
# CPU while the model may be on a GPU. `*_like` and `x.new_*` follow their argument instead.
FACTORIES: frozenset[str] = _words(
    """
    arange empty empty_strided eye full linspace logspace ones rand randint randn randperm range
    scalar_tensor tensor tril_indices triu_indices zeros
    """
)

# torch.<name>(...) calls that certainly return one tensor (used to decide "tensor-valued").
TORCH_TENSOR_FUNCS: frozenset[str] = FACTORIES | _words(
    """
    abs add addmm amax amin baddbmm bmm cat cdist clamp clip clone concat concatenate cos cosh
    cumprod cumsum diag diagonal div einsum empty_like erf exp exp2 expm1 flatten flip floor
    fmod full_like gather index_select log log10 log1p log2 log_softmax logsumexp masked_fill
    matmul maximum mean minimum mm mul multinomial narrow neg norm ones_like outer permute pow
    prod rand_like randint_like randn_like reciprocal relu remainder repeat_interleave reshape
    round rsqrt sigmoid sign sin sinh softmax sqrt square squeeze stack sub sum t tanh tile
    transpose tril triu unsqueeze var where zeros_like
    """
)

# torch.nn.functional.<name>(...) calls that return one tensor.
FUNCTIONAL_TENSOR_FUNCS: frozenset[str] = _words(
    """
    adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d avg_pool1d avg_pool2d avg_pool3d
    batch_norm binary_cross_entropy binary_cross_entropy_with_logits conv1d conv2d conv3d
    conv_transpose1d conv_transpose2d conv_transpose3d cosine_similarity cross_entropy dropout
    elu embedding gelu glu group_norm hardswish hardtanh instance_norm interpolate kl_div l1_loss
    layer_norm leaky_relu linear log_softmax logsigmoid mish mse_loss nll_loss normalize one_hot
    pad pixel_shuffle relu relu6 rms_norm selu sigmoid silu smooth_l1_loss softmax softplus tanh
    """
)

# Tensor methods that return one tensor (so `x.view(...)` of a tensor is still a tensor).
TENSOR_METHODS: frozenset[str] = _words(
    """
    abs add bool clamp clone contiguous cos cpu cuda cumsum detach div double exp expand
    expand_as flatten flip float half int log long masked_fill matmul mean mm mul neg norm
    permute pow prod relu repeat reshape sigmoid sin softmax sqrt square squeeze sub sum t tanh
    to transpose type_as unsqueeze view view_as
    """
)

# Public nn.Module methods: a call to one of these in __init__ never initialises the module.
MODULE_METHODS: frozenset[str] = _words(
    """
    add_module apply bfloat16 buffers children compile cpu cuda double eval extra_repr float
    forward get_buffer get_extra_state get_parameter get_submodule half load_state_dict modules
    named_buffers named_children named_modules named_parameters parameters
    register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_module
    register_parameter requires_grad_ set_extra_state set_submodule share_memory state_dict to
    to_empty train type zero_grad
    """
)
