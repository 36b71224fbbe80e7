"""ltx-ray: Parquet manifests -> LTX-2 videos (H.264 + AAC) on Ray.

The layers, each a subpackage that imports only the ones before it:

    errors   schema  ->  storage  ->  engine  ->  job  ->  batch | serve | products  ->  commands, cli
                                                                       doctor checks them all

README.md ("How it works") walks the data flow through them.
"""

__version__ = "0.1.0"
