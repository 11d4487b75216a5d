"""The web tool for callback agents and supervisors (issue: web tool)."""
