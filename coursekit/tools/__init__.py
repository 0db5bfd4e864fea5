"""The tools that build, publish and grade the course (instructors and maintainers, not lessons).

* ``course``: badges and setup cells generated from ``course.toml`` (``make sync``);
* ``exercises``: student notebooks generated from ``solutions/`` (``make exercises``);
* ``gallery``: every lesson executed and rendered to HTML (``make lessons``);
* ``grade`` and ``submission``: the instructors' grader (``python -m coursekit.tools.grade``);
* ``gradescope``, ``export``, ``release``: grading a class on Gradescope, gradebook exports, and the
  student release (``python -m coursekit.tools.course release DEST``).

Lessons never import these modules; they import the modules at the top of ``coursekit``.
"""
