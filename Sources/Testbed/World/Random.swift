import BLAS

/// The world's random numbers come from the project's one generator: a seed fixes every byte of a scene
/// (dataset split, scene sampling, placement).
public typealias WorldRNG = SplitMix64
