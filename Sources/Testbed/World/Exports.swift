// The world's scenes are `Imaging` RGB images; importing World brings them along.
@_exported import Imaging
