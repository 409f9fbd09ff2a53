"""Readers of the benchmarks' data files: AMBER, POPE and COCO captions, checked line by line.

Each reader turns a file into small frozen dataclasses and raises a one-line
:class:`~lvlm_skip.data.json_files.DataFileError` naming the file and the entry on bad input. The
package imports only :mod:`lvlm_skip.errors` (a test enforces it): no torch, no model, no metric.

* :mod:`~lvlm_skip.data.json_files`: the one reader of JSON and JSON-lines files;
* :mod:`~lvlm_skip.data.amber`: AMBER's queries and annotations;
* :mod:`~lvlm_skip.data.pope`: POPE's question files;
* :mod:`~lvlm_skip.data.coco_captions`: COCO caption references and image lists.
"""
