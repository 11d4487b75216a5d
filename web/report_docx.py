"""The 核查整改情况报告单 as a Word file (python-docx), for units that file it on paper or by mail."""

from __future__ import annotations

import io

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt

from rating_core.verification_report import Report

FONT = "SimSun"  # 宋体, what government forms are set in; Word substitutes where it is missing


def report_docx(report: Report) -> bytes:
    document = Document()
    style = document.styles["Normal"]
    style.font.name = FONT
    style.font.size = Pt(14)
    style.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)  # python-docx sets only the Latin font
    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run(report.title)
    run.bold = True
    run.font.size = Pt(18)
    document.add_paragraph(report.addressee)
    document.add_paragraph(report.opening).paragraph_format.first_line_indent = Pt(28)
    for heading, text in report.sections:
        document.add_paragraph().add_run(heading).bold = True
        document.add_paragraph(text).paragraph_format.first_line_indent = Pt(28)
    for line in (report.signature, report.dated):
        document.add_paragraph(line).alignment = WD_ALIGN_PARAGRAPH.RIGHT
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
