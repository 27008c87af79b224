"""nbgrader plug-in for the course configuration (``exercises.NBGRADER_CONFIG``); needs the ``classroom`` extra.

nbgrader 0.9 stores a locked test cell's checksum *before* it removes the hidden tests from the student version
(jupyter/nbgrader#1961), so autograde warns "Attribute 'checksum' for cell ... has changed!" for every such cell of
every submission, the untouched release included. :class:`OverwriteCells` warns only when the submitted cell differs
from what the student was given; either way the cell is restored from the gradebook, hidden tests included.
"""
from __future__ import annotations

import copy

from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.preprocessors import OverwriteCells as _NbgraderOverwriteCells


class OverwriteCells(_NbgraderOverwriteCells):
    """nbgrader's ``OverwriteCells`` without the false checksum warning on cells whose hidden tests were removed."""

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and utils.is_locked(cell):
            source = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            released = copy.deepcopy(cell)
            released.source = source.source
            ClearHiddenTests(parent=self)._remove_hidden_test_region(released)   # the cell as handed out
            if source.locked and cell.source == released.source != source.source:
                cell.source = source.source       # untouched: restore the hidden tests without a warning
        return super().preprocess_cell(cell, resources, cell_index)
