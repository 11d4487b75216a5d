"""The web tool's forms (Flask-WTF: each carries its CSRF token), with zh-CN messages."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from werkzeug.datastructures import ImmutableMultiDict
from wtforms import DateField, PasswordField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from rating_core.rules.callback_policy import VERDICTS


class PageForm(FlaskForm):
    """A form a page posts, urlencoded or multipart. Flask-WTF would take a JSON body for the form too: these
    never come as JSON, and a JSON body nested deep enough makes the parser raise RecursionError (a 500), so a
    JSON body is never read and the form counts as sent empty."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if request.is_json:
                return ImmutableMultiDict() if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
            return super().wrap_formdata(form, formdata)


class LoginForm(PageForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名"),
                                                 Length(max=64, message="用户名不超过64个字符")])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"),
                                                 Length(max=256, message="密码不超过256个字符")])


class VerdictForm(PageForm):
    """核实结论: one of the four outcomes, what was found, for 限期整改 an optional earlier deadline, and for
    立行立改 / 解释说明 optionally what was done or explained."""

    verdict = SelectField("核实结论", choices=[SelectChoice("", "请选择"),
                                              *(SelectChoice(code, name) for code, name in VERDICTS.items())],
                          validators=[DataRequired("请选择核实结论")])
    note = TextAreaField("核实情况", validators=[DataRequired("请填写核实情况说明"),
                                                 Length(max=2000, message="核实情况不超过2000字")])
    rectify_by = DateField("整改期限（限期整改时可填，不填按规定上限）", validators=[Optional()],
                           format="%Y-%m-%d")
    # What was done or explained, for the 报告单's 整改情况 (without it the note stands for both).
    done = TextAreaField("已采取的整改措施或向市民所作的解释（立行立改、解释说明时可填）",
                         validators=[Optional(), Length(max=2000, message="整改措施或解释内容不超过2000字")])


class RectifiedForm(PageForm):
    note = TextAreaField("整改情况", validators=[DataRequired("请填写整改情况"),
                                                 Length(max=2000, message="整改情况不超过2000字")])


class SatisfactionForm(PageForm):
    """整改满意: what the citizen said when the agent called back after the rectification."""

    satisfied = RadioField("市民对处理结果是否满意",
                           choices=[SelectChoice("yes", "满意"), SelectChoice("no", "不满意")],
                           validators=[DataRequired("请选择市民的回答")])


class ActionForm(PageForm):
    """A button that changes something (click-to-call, sign out): only its CSRF token."""
