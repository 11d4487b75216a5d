"""The 核查整改情况报告单 as a Word file (python-docx), for units that file it on paper or by mail.

Laid out as a 公文 (GB/T 9704-2012) so it can be filed as it is: A4, margins
3.7 / 3.5 / 2.8 / 2.6 cm, the title in 2号 小标宋, the text in 3号 仿宋_GB2312
at a fixed 28 pt line, first-level headings (一、二、) in 3号 黑体, paragraphs
indented two characters, 成文日期 four characters from the right.
"""

from __future__ import annotations

import io

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from docx.shared import Cm, Pt
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from rating_core.complaints.verification_report import Report
from rating_core.reports.cell_text import printable

TITLE_FONT = "方正小标宋简体"
BODY_FONT = "仿宋_GB2312"
HEADING_FONT = "黑体"
TITLE_SIZE = Pt(22)  # 2号
BODY_PT = 16  # 3号
BODY_SIZE = Pt(BODY_PT)
LINE_PT = 28  # fixed, which gives the standard's 22 lines a page
LINE = Pt(LINE_PT)
INDENT_CHARS = 2


def _fonts(r_pr: BaseOxmlElement, name: str) -> None:
    """Name the font for Latin and for Chinese text: python-docx's ``font.name`` sets only the Latin one."""
    fonts = r_pr.get_or_add_rFonts()
    for script in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(script), name)


def _chinese_defaults(document: DocumentObject) -> None:
    """The template's defaults are English text in theme fonts; a theme font outranks a named one,
    so the themes go and Chinese (zh-CN) in 仿宋_GB2312 becomes the default."""
    defaults = document.styles.element.find(qn("w:docDefaults"))
    r_pr = defaults.find(f"{qn('w:rPrDefault')}/{qn('w:rPr')}") if defaults is not None else None
    if r_pr is None:
        return
    fonts = r_pr.find(qn("w:rFonts"))
    if fonts is not None:
        for theme in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
            fonts.attrib.pop(qn(theme), None)
    _fonts(r_pr, BODY_FONT)
    lang = r_pr.find(qn("w:lang"))
    if lang is not None:
        lang.set(qn("w:eastAsia"), "zh-CN")


def _run(paragraph: Paragraph, text: str, font: str, size: Pt) -> Run:
    run = paragraph.add_run(printable(text))
    run.font.size = size
    _fonts(run._element.get_or_add_rPr(), font)
    return run


def _indented(paragraph: Paragraph) -> Paragraph:
    # In characters (firstLineChars, hundredths) so Word keeps two characters whatever the font;
    # the length in points is for readers that know only that.
    paragraph.paragraph_format.first_line_indent = Pt(BODY_PT * INDENT_CHARS)
    paragraph._p.get_or_add_pPr().get_or_add_ind().set(qn("w:firstLineChars"), str(INDENT_CHARS * 100))
    return paragraph


def report_docx(report: Report) -> bytes:
    document = Document()
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
    section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)

    _chinese_defaults(document)
    normal = document.styles["Normal"]
    normal.font.size = BODY_SIZE
    _fonts(normal.element.get_or_add_rPr(), BODY_FONT)
    spacing = normal.paragraph_format
    spacing.line_spacing_rule, spacing.line_spacing = WD_LINE_SPACING.EXACTLY, LINE
    spacing.space_before = spacing.space_after = Pt(0)
    document.core_properties.title = report.title
    document.core_properties.author = printable(report.signature)
    document.core_properties.language = "zh-CN"

    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(title, report.title, TITLE_FONT, TITLE_SIZE)
    title.paragraph_format.space_after = LINE  # a blank line under the title
    # Every text comes from the record (a 工单号, a unit's name, what an agent typed): no control character
    # may make the file unwritable.
    document.add_paragraph(printable(report.addressee))
    _indented(document.add_paragraph(printable(report.opening)))
    for heading, text in report.sections:
        _run(_indented(document.add_paragraph()), heading, HEADING_FONT, BODY_SIZE)
        _indented(document.add_paragraph(printable(text)))
    signature = document.add_paragraph(printable(report.signature))
    signature.paragraph_format.space_before = Pt(LINE_PT * 2)
    for line in (signature, document.add_paragraph(report.dated)):
        line.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        line.paragraph_format.right_indent = Pt(BODY_PT * 4)  # 成文日期右空四字
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
