"""The runtime: bundles, backends, sources, pre/post-processing, sinks and the pipeline.

Never imports torch: a Jetson that only runs engines does not install it.
"""
